"""Funding's composition root: builds the application, relay, consumer and projector, serves the API.

    python -m services.funding.main
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.funding import api, consumers, projections
from services.funding.application import FundingApplication
from shared.consumer import Consumer
from shared.http import Runtime, create_api, serve
from shared.projections import Projector, migrate, views_engine
from shared.relay import Relay
from shared.settings import Settings
from shared.store import schema_lock
from shared.topics import event_topic

MIGRATIONS = Path(__file__).with_name("migrations")


def build(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings(service="funding")
    engine = views_engine(settings)
    with schema_lock(settings):  # other processes of this service may be starting too
        migrate(engine, MIGRATIONS)
        app = FundingApplication(settings)
    return Runtime(
        settings=settings,
        app=app,
        relay=Relay(app, settings.topic(event_topic("funding")), batch_size=settings.relay_batch_size,
                    poll_interval=settings.poll_interval),
        consumers=[Consumer(app, [settings.topic(t) for t in consumers.TOPICS], consumers.handler(app),
                            max_attempts=settings.consumer_max_attempts)],
        projector=Projector(app, engine, projections.metadata, projections.PROJECTIONS,
                            poll_interval=settings.poll_interval),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = build(settings)
    return create_api(runtime, api.routers, title="Passerelle funding",
                      description="Every decision on public money: programme rules, budget envelopes, "
                                  "feasibility grants, financing decisions (four-eyes), tranches, return aid, "
                                  "and the ledger of them all.")


def main() -> None:
    serve("funding", create_app)


if __name__ == "__main__":
    main()
