"""The audit's composition root: the replay of every topic and the read-only API.

    python -m services.audit.main
"""

from __future__ import annotations

from fastapi import FastAPI

from services.audit import api
from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from shared.http import Runtime, create_api, serve
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings(service="audit")
    audit = AuditApplication(settings)
    # No store of its own, no relay: the audit writes nothing, it reads Kafka.
    runtime = Runtime(settings=settings, app=None, consumers=[Replay(audit, settings)])  # type: ignore[list-item]
    service = create_api(runtime, api.routers, title="Passerelle audit",
                         description="Every service's log rebuilt from Kafka alone and checked against the "
                                     "services' signed checkpoints (RFC 9162): verification, proofs.")
    service.state.audit = audit
    return service


def main() -> None:
    serve("audit", create_app)


if __name__ == "__main__":
    main()
