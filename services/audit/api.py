"""The audit's HTTP API (docs/operations.md): read-only, for auditors and administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Query, Request

from services.audit.application import AuditApplication
from shared.api import MOMENT, Moment
from shared.auth import Principal, Role, requires
from shared.settings import service_url


def application(request: Request) -> AuditApplication:
    return request.app.state.audit


App = Annotated[AuditApplication, Depends(application)]
Auditor = Annotated[Principal, Depends(requires(Role.auditor, Role.admin))]

queries = APIRouter(prefix="/v1", tags=["audit"])


@queries.get("/verification")
def verification(app: App, _: Auditor) -> dict[str, Any]:
    """Per service: the tree rebuilt from its records (size, root), the last checkpoint verified
    against it, and every problem found (kind, sequence, what is wrong)."""
    return app.verification()


@queries.get("/proofs/inclusion")
def inclusion(app: App, _: Auditor, service: str, seq: Annotated[int, Query(ge=0)],
              size: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """RFC 9162 inclusion proof of event `seq` in the tree of `size` events (default: the last
    verified checkpoint). Check it with `tools/verify.py inclusion`."""
    return app.inclusion_proof(service, seq, size)


@queries.get("/proofs/consistency")
def consistency(app: App, _: Auditor, service: str, from_: Annotated[int, Query(alias="from", ge=1)],
                to: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """RFC 9162 consistency proof between the trees of `from` and `to` events (default: the last
    verified checkpoint)."""
    return app.consistency_proof(service, from_, to)


@queries.get("/ledger")
async def ledger(request: Request, app: App, _: Auditor,
                 as_of: Annotated[Moment | None, Query(description=f"the ledger as it stood then: {MOMENT}")] = None,
                 compare: Annotated[bool, Query(description="compare with funding's own ledger")] = True
                 ) -> dict[str, Any]:
    """The ledger of public-funds decisions and the envelopes' totals, rebuilt from `funding.events`
    alone, and what differs from what funding keeps: its decisions (GET /v1/decisions, as of the
    same moment) and, for now only, its envelopes' totals (GET /v1/envelopes). Funding is asked
    with the caller's own token: the audit acts for the auditor and holds no credentials."""
    rebuilt = app.ledger_as_of(as_of)
    if compare:
        authorization = request.headers["Authorization"]
        try:
            kept = await funding_ledger(authorization, as_of)
            envelopes = await funding_envelopes(authorization) if as_of is None else None
            rebuilt["comparison"] = app.compare_ledger(rebuilt, kept, envelopes)
        except (httpx.HTTPError, ValueError) as exc:
            rebuilt["comparison"] = {"matches": None, "unavailable": f"funding's ledger: {type(exc).__name__}: {exc}"}
    return rebuilt


async def funding_ledger(authorization: str, as_of: datetime | None) -> list[dict[str, Any]]:
    """Every entry of funding's own ledger, page by page, read with the caller's token."""
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
    async with _funding(authorization) as client:
        while True:
            response = await client.get("/v1/decisions", params=params)
            response.raise_for_status()
            page = response.json()
            entries += page["items"]
            if not page.get("next_cursor"):
                return entries
            params["cursor"] = page["next_cursor"]


async def funding_envelopes(authorization: str) -> list[dict[str, Any]]:
    """Every envelope's totals as funding keeps them now, read with the caller's token."""
    async with _funding(authorization) as client:
        response = await client.get("/v1/envelopes")
        response.raise_for_status()
        envelopes: list[dict[str, Any]] = response.json()
        return envelopes


def _funding(authorization: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service_url("funding"), timeout=30, headers={"Authorization": authorization})


routers = [queries]
