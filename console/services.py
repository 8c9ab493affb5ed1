"""The services' HTTP APIs, called with the signed-in person's own access token.

The console holds no permission of its own: what a person may see or do is what the services
answer to their token. Problems (problem+json) become exceptions the pages turn into sentences.
"""

from __future__ import annotations

from typing import Any

import httpx

from console.settings import ConsoleSettings


class SignInAgain(Exception):
    """The service refused the token (expired, or revoked): the person signs in again."""


class Unavailable(Exception):
    """The service could not be reached or failed (5xx): nothing the person typed is wrong."""


class Refused(Exception):
    """A 4xx problem+json: bad input (422 with `errors`), a rule (409 with `rule`), missing (404)..."""

    def __init__(self, status: int, problem: dict[str, Any]):
        super().__init__(f"{status} {problem.get('title', '')}")
        self.status = status
        self.problem = problem

    @property
    def rule(self) -> str | None:
        return self.problem.get("rule")

    @property
    def errors(self) -> list[dict[str, Any]]:
        found = self.problem.get("errors")
        return found if isinstance(found, list) else []


class Services:
    def __init__(self, settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.http = httpx.AsyncClient(timeout=settings.api_timeout, transport=transport)

    async def close(self) -> None:
        await self.http.aclose()

    async def get(self, token: str, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        return await self._call("GET", token, service, path, params=query)

    async def post(self, token: str, service: str, path: str, body: dict[str, Any] | None = None,
                   idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._call("POST", token, service, path, json=body, headers=headers)

    async def _call(self, method: str, token: str, service: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", **kwargs.pop("headers", {})}
        try:
            answer = await self.http.request(method, self.settings.url_of(service) + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{service}: {exc.__class__.__name__}") from exc
        if answer.status_code == 401:
            raise SignInAgain()
        if answer.status_code >= 500:
            raise Unavailable(f"{service}: {answer.status_code}")
        if answer.status_code >= 400:
            try:
                problem = answer.json()
            except ValueError:
                problem = {}
            raise Refused(answer.status_code, problem if isinstance(problem, dict) else {})
        return answer.json() if answer.content else None
