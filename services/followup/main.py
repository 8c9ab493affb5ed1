"""Followup's composition root: builds the application, relay, consumer, projector and overdue scheduler.

    python -m services.followup.main
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.followup import api, consumers, projections
from services.followup.application import FollowupApplication
from shared.consumer import Consumer
from shared.http import Runtime, create_api, serve
from shared.projections import Projector, migrate, views_engine
from shared.relay import Relay
from shared.settings import Settings
from shared.store import schema_lock
from shared.topics import event_topic

MIGRATIONS = Path(__file__).with_name("migrations")
# How often the scheduler looks for visits past their due date. Due dates are days: a
# minute is plenty, and a run after any downtime catches up whatever fell due meanwhile.
FLAG_OVERDUE_EVERY_SECONDS = 60.0


def build(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings(service="followup")
    engine = views_engine(settings)
    with schema_lock(settings):  # other processes of this service may be starting too
        migrate(engine, MIGRATIONS)
        app = FollowupApplication(settings)
    projector = Projector(app, engine, projections.metadata, projections.PROJECTIONS,
                          poll_interval=settings.poll_interval)
    app.use_read_models(projector)  # the scheduler and the indicators read them
    return Runtime(
        settings=settings,
        app=app,
        relay=Relay(app, settings.topic(event_topic("followup")), batch_size=settings.relay_batch_size,
                    poll_interval=settings.poll_interval),
        consumers=[Consumer(app, [settings.topic(t) for t in consumers.TOPICS], consumers.handler(app),
                            max_attempts=settings.consumer_max_attempts)],
        projector=projector,
        periodic=[(FLAG_OVERDUE_EVERY_SECONDS, app.flag_overdue_visits)],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = build(settings)
    return create_api(runtime, api.routers, title="Passerelle followup",
                      description="The year after a financed business is launched: the plan of visits, visits "
                                  "by local operators (offline ones included), overdue visits, alerts that "
                                  "suspend funding, the outcome, and the programme's indicators.")


def main() -> None:
    serve("followup", create_app)


if __name__ == "__main__":
    main()
