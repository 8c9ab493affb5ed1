"""RFC 9457 problem details for every error, with a stable `type` per kind of problem.

Bad input is 4xx, never a 500; a broken rule is 409 naming the rule.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.domain import InvalidValue, NotFound, RuleViolated

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
BASE = "https://passerelle.dev/problems/"

_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed for your role"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Invalid request"),
    429: ("too-many-requests", "Too many requests"),
}


def problem(status: int, detail: str, *, type_: str | None = None, title: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    slug, default_title = _TITLES.get(status, ("error", "Error"))
    body = {"type": BASE + (type_ or slug), "title": title or default_title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class Replayed(Exception):
    """The response stored for an Idempotency-Key, sent again."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body


def install(api: FastAPI) -> None:
    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem(422, "the request does not match the schema", errors=errors)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @api.exception_handler(RuleViolated)
    async def rule_violated(request: Request, exc: RuleViolated) -> JSONResponse:
        return problem(409, exc.detail, type_=f"rule/{exc.rule}", title=f"Rule violated: {exc.rule}", rule=exc.rule)

    @api.exception_handler(InvalidValue)
    async def invalid_value(request: Request, exc: InvalidValue) -> JSONResponse:
        return problem(422, exc.detail, errors=[{"loc": ["body", exc.field], "msg": exc.detail, "type": "value_error"}])

    @api.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, str(exc))

    @api.exception_handler(AggregateNotFoundError)
    async def aggregate_not_found(request: Request, exc: AggregateNotFoundError) -> JSONResponse:
        return problem(404, "no such resource")

    @api.exception_handler(IntegrityError)
    async def conflict(request: Request, exc: IntegrityError) -> JSONResponse:
        return problem(409, "the resource was changed by another request; read it again and retry",
                       type_="concurrent-modification")

    @api.exception_handler(Replayed)
    async def replayed(request: Request, exc: Replayed) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers={"Idempotent-Replayed": "true"})

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error occurred; it has been logged", type_="internal-error",
                       title="Internal error")


__all__ = ["HTTPException", "PROBLEM_JSON", "Replayed", "install", "problem"]
