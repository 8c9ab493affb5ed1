"""Intake's composition root: builds the application, relay, consumer and projector, serves the API.

    python -m services.intake.main
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.intake import api, consumers, projections
from services.intake.application import IntakeApplication
from shared.consumer import Consumer
from shared.http import Runtime, create_api, serve
from shared.keys import load_master_key, master_key_path
from shared.projections import Projector, migrate, views_engine
from shared.relay import Relay
from shared.settings import Settings
from shared.store import schema_lock
from shared.topics import event_topic

MIGRATIONS = Path(__file__).with_name("migrations")


def build(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings(service="intake")
    engine = views_engine(settings)
    with schema_lock(settings):  # other processes of this service may be starting too
        migrate(engine, MIGRATIONS)
        app = IntakeApplication(settings, load_master_key(master_key_path(settings)))
    return Runtime(
        settings=settings,
        app=app,
        relay=Relay(app, settings.topic(event_topic("intake")), batch_size=settings.relay_batch_size,
                    poll_interval=settings.poll_interval),
        consumers=[Consumer(app, [settings.topic(t) for t in consumers.TOPICS], consumers.handler(app),
                            max_attempts=settings.consumer_max_attempts)],
        projector=Projector(app, engine, projections.metadata, projections.PROJECTIONS,
                            poll_interval=settings.poll_interval),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = build(settings)
    return create_api(runtime, api.routers, title="Passerelle intake",
                      description="Dossiers of migrant promoters: submission, eligibility, preparation, "
                                  "feasibility study, sending to the funding committee.")


def main() -> None:
    serve("intake", create_app)


if __name__ == "__main__":
    main()
