"""What intake does with other services' events.

From partners: the dossier's partners. From funding: the programme rules to
screen with, the feasibility grant's outcome and the financing decision.
"""

from __future__ import annotations

from uuid import UUID

from services.intake.application import IntakeApplication
from services.intake.domain import FinancingDecision
from shared.envelope import CloudEvent
from shared.topics import event_topic

TOPICS = [event_topic("partners"), event_topic("funding"), event_topic("followup")]

_DECISIONS = {"FinancingApproved": FinancingDecision.approved, "FinancingDeferred": FinancingDecision.deferred,
              "FinancingRejected": FinancingDecision.rejected}


def handler(app: IntakeApplication):
    def handle(event: CloudEvent) -> None:
        if event.name == "PartnersAssigned":
            app.record_partners(
                UUID(event.data["project_id"]),
                support_structure_id=event.data["support_structure_id"],
                local_operator_id=event.data["local_operator_id"],
            )
        # Funding's events about a dossier are subjected by the dossier's (project's) id; their
        # aggregate version tells a new decision from one heard before.
        elif event.name == "ProgrammeRulesPublished":
            app.adopt_rules(event.data["version"], event.data["countries"], event.data["min_planned_jobs"])
        elif event.name == "FeasibilityGrantAwarded":
            app.record_feasibility_grant(UUID(event.subject), "awarded", event.data["amount_cents"],
                                         event.data["payee"], [], event.aggregateversion)
        elif event.name == "FeasibilityGrantRejected":
            app.record_feasibility_grant(UUID(event.subject), "rejected", None, None, event.data["reasons"],
                                         event.aggregateversion)
        elif event.name in _DECISIONS:
            app.record_financing_decision(UUID(event.subject), _DECISIONS[event.name],
                                          event.data.get("amount_cents"), event.data["rule_version"],
                                          event.aggregateversion)
        elif event.name == "FollowUpOpened":
            app.record_followup(UUID(event.data["project_id"]))

    return handle
