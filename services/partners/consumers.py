"""What partners does with other services' events: assign eligible dossiers, free the partners of ended ones."""

from __future__ import annotations

from uuid import UUID

from services.partners.application import PartnersApplication
from shared.envelope import CloudEvent
from shared.topics import event_topic

TOPICS = [event_topic("intake")]


def handler(app: PartnersApplication):
    def handle(event: CloudEvent) -> None:
        # Intake's events are keyed and subjected by the dossier's (project's) id.
        if event.name == "EligibilityAssessed":
            if event.data.get("eligible") is True:
                app.assign(
                    UUID(event.subject),
                    country=event.data["country"],
                    french_region=event.data["french_region"],
                    sector=event.data["sector"],
                )
        elif event.name == "ProjectWithdrawn":
            # The promoter's own words stay in intake: partners only needs to know it ended.
            app.end_assignment(UUID(event.subject), reason="dossier_withdrawn")
        elif event.name == "ProjectClosed":
            app.end_assignment(UUID(event.subject), reason=f"dossier_closed: {event.data.get('reason', 'unknown')}")

    return handle
