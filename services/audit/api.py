"""The audit's HTTP API (DESIGN §4, §5): read-only, for auditors and administrators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.audit.application import AuditApplication
from shared.auth import Principal, Role, requires


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


routers = [queries]
