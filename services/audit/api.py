"""The audit's HTTP API (DESIGN §4, §5): read-only, for auditors and administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Query, Request

from services.audit.application import AuditApplication
from shared.auth import Principal, Role, issue_token, requires
from shared.settings import Settings, service_url


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
                 as_of: Annotated[datetime | None, Query(description="the ledger as it stood then (with a zone)")] = None,
                 compare: Annotated[bool, Query(description="compare with funding's own ledger")] = True
                 ) -> dict[str, Any]:
    """The ledger of public-funds decisions and the envelopes' totals, rebuilt from `funding.events`
    alone, and what differs from the ledger funding keeps (GET /v1/decisions of funding)."""
    rebuilt = app.ledger_as_of(as_of)
    if compare:
        try:
            kept = await funding_ledger(request.app.state.audit.settings, as_of)
            rebuilt["comparison"] = app.compare_ledger(rebuilt, kept)
        except (httpx.HTTPError, ValueError) as exc:
            rebuilt["comparison"] = {"matches": None, "unavailable": f"funding's ledger: {type(exc).__name__}: {exc}"}
    return rebuilt


async def funding_ledger(settings: Settings, as_of: datetime | None) -> list[dict[str, Any]]:
    """Every entry of funding's own ledger, page by page, read as an auditor."""
    token = issue_token(settings, "auditor", sub="service:audit", ttl_seconds=300)
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
    async with httpx.AsyncClient(base_url=service_url("funding"), timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            response = await client.get("/v1/decisions", params=params)
            response.raise_for_status()
            page = response.json()
            entries += page["items"]
            if not page.get("next_cursor"):
                return entries
            params["cursor"] = page["next_cursor"]


routers = [queries]
