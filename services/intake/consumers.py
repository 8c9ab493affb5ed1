"""What intake does with other services' events."""

from __future__ import annotations

from uuid import UUID

from services.intake.application import IntakeApplication
from shared.envelope import CloudEvent
from shared.topics import event_topic

TOPICS = [event_topic("partners"), event_topic("followup")]


def handler(app: IntakeApplication):
    def handle(event: CloudEvent) -> None:
        if event.name == "PartnersAssigned":
            app.record_partners(
                UUID(event.data["project_id"]),
                support_structure_id=event.data["support_structure_id"],
                local_operator_id=event.data["local_operator_id"],
            )
        elif event.name == "FollowUpOpened":
            app.record_followup(UUID(event.data["project_id"]))

    return handle
