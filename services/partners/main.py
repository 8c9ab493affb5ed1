"""Partners' composition root: builds the application, relay, consumer and projector, serves the API.

    python -m services.partners.main
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.partners import api, consumers, projections
from services.partners.application import PartnersApplication
from services.partners.feeds import PartnerFeed
from shared.consumer import Consumer
from shared.http import Runtime, create_api, serve
from shared.projections import Projector, migrate, views_engine
from shared.relay import Relay
from shared.settings import Settings
from shared.store import schema_lock
from shared.topics import event_topic

MIGRATIONS = Path(__file__).with_name("migrations")
# Dossiers waiting for partners are tried again this often, so none stays pending after a
# crash, nor after an ended dossier freed some capacity (a consumer record may save once only).
ASSIGN_PENDING_EVERY_SECONDS = 5.0


def build(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings(service="partners")
    engine = views_engine(settings)
    with schema_lock(settings):  # other processes of this service may be starting too
        migrate(engine, MIGRATIONS)
        app = PartnersApplication(settings)
    projector = Projector(app, engine, projections.metadata, projections.PROJECTIONS,
                          poll_interval=settings.poll_interval)
    app.use_read_models(projector)  # assignment decisions read the caseloads
    return Runtime(
        settings=settings,
        app=app,
        relay=Relay(app, settings.topic(event_topic("partners")), batch_size=settings.relay_batch_size,
                    poll_interval=settings.poll_interval),
        consumers=[Consumer(app, [settings.topic(t) for t in consumers.TOPICS], consumers.handler(app),
                            max_attempts=settings.consumer_max_attempts)],
        projector=projector,
        periodic=[(ASSIGN_PENDING_EVERY_SECONDS, app.assign_pending)],
        # The partner feeds job, in every process that does background work (/readyz, /metrics).
        workers=[PartnerFeed(app, settings)],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = build(settings)
    return create_api(runtime, api.routers, title="Passerelle partners",
                      description="The operator network: support structures in France, local operators in "
                                  "the countries of origin, financial partners; the assignment of dossiers to them.")


def main() -> None:
    serve("partners", create_app)


if __name__ == "__main__":
    main()
