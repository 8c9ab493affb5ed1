"""RFC 9457 problem details for every error, with a stable `type` per kind of problem.

Bad input is 4xx, never a 500; a broken rule is 409 naming the rule.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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
    503: ("unavailable", "Unavailable"),
}


class ProblemError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then the field")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem: every error answer of every route (application/problem+json)."""

    type: str = Field(description="a URI naming the kind of problem, e.g. " + BASE + "rule/committee_after_study")
    title: str
    status: int
    detail: str
    rule: str | None = Field(None, description="the rule broken (409)")
    errors: list[ProblemError] | None = Field(None, description="what is wrong in the request (422)")


# Why a route may answer each status: the description of that answer in the OpenAPI.
ANSWERS = {
    401: "no bearer token, or a token that is invalid or expired",
    403: "the token's roles do not allow this",
    404: "no such thing (or not one the caller may see)",
    409: "a rule of the programme is broken (`rule` names it), or the thing was changed meanwhile",
    413: "the request body is too large",
    422: "the request is invalid (`errors` says where)",
    500: "an unexpected error (logged)",
    503: "the identity provider's keys or the store cannot be reached now: retry (Retry-After)",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each a problem+json `Problem`."""
    return {status: {"description": ANSWERS[status],
                     "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}


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
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            # FastAPI's answer to a body it cannot decode (not UTF-8): bad input like any other.
            return problem(422, "the body is not JSON in UTF-8",
                           errors=[{"loc": ["body"], "msg": "not JSON in UTF-8", "type": "json_invalid"}])
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Allow lists every method of the path, not only the first route's
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return problem(exc.status_code, str(exc.detail), headers=headers)

    @api.exception_handler(RuleViolated)
    async def rule_violated(request: Request, exc: RuleViolated) -> JSONResponse:
        return problem(409, exc.detail, type_=f"rule/{exc.rule}", title=f"Rule violated: {exc.rule}", rule=exc.rule)

    @api.exception_handler(InvalidValue)
    async def invalid_value(request: Request, exc: InvalidValue) -> JSONResponse:
        where = ("path" if exc.field in request.path_params else "query" if exc.field in request.query_params
                 else "body")
        return problem(422, exc.detail, errors=[{"loc": [where, exc.field], "msg": exc.detail, "type": "value_error"}])

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

    @api.exception_handler(OperationalError)
    @api.exception_handler(InterfaceError)
    @api.exception_handler(sqlalchemy.exc.OperationalError)
    @api.exception_handler(sqlalchemy.exc.InterfaceError)
    async def store_unreachable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("the store cannot be reached on %s %s: %s", request.method, request.url.path, exc)
        return problem(503, "the store cannot be reached now; retry", type_="store-unavailable",
                       title="Store unavailable", headers={"Retry-After": "5"})

    @api.exception_handler(Replayed)
    async def replayed(request: Request, exc: Replayed) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers={"Idempotent-Replayed": "true"})

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return internal_error()


def allowed_methods(request: Request) -> list[str]:
    methods = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.append(method)
    return methods


def internal_error() -> JSONResponse:
    return problem(500, "an unexpected error occurred; it has been logged", type_="internal-error",
                   title="Internal error")


__all__ = ["PROBLEM_JSON", "HTTPException", "Problem", "Replayed", "answers", "install", "internal_error", "problem"]
