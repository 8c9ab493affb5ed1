"""What followup does with other services' events.

From intake: when the dossier was submitted (country, own contribution) and sent
to the committee. From partners: the dossier's local operator. From funding:
the visit months of each version of the programme rules, the rule version a
financing was approved under, and the first tranche paid, which opens the
follow-up. Every one of these events is subjected by the dossier's (project's)
id, except the programme rules; extra fields are ignored.
"""

from __future__ import annotations

from uuid import UUID

from services.followup.application import FollowupApplication
from shared.envelope import CloudEvent, rfc3339
from shared.topics import event_topic

TOPICS = [event_topic("intake"), event_topic("partners"), event_topic("funding")]


def _project_id(event: CloudEvent) -> UUID:
    return UUID(str(event.data.get("project_id") or event.subject))


def handler(app: FollowupApplication):
    def handle(event: CloudEvent) -> None:
        name, data = event.name, event.data
        if event.service == "intake":
            if name == "ProjectSubmitted":
                app.note_submission(_project_id(event), country=data["country"], submitted_at=rfc3339(event.time),
                                    own_contribution_cents=int(data["own_contribution_cents"]),
                                    planned_jobs=int(data["planned_jobs"]))
            elif name == "ProjectSentToCommittee":
                app.note_committee(_project_id(event), sent_at=rfc3339(event.time),
                                   own_contribution_cents=int(data["own_contribution_cents"]),
                                   planned_jobs=int(data["planned_jobs"]))
        elif event.service == "partners":
            if name == "PartnersAssigned":
                app.note_local_operator(_project_id(event), local_operator_id=data["local_operator_id"],
                                        support_structure_id=data.get("support_structure_id"))
        elif event.service == "funding":
            if name == "ProgrammeRulesPublished":
                app.note_rules(str(data["version"]), data.get("countries") or {})
            elif name == "FinancingApproved":
                app.note_financing(_project_id(event), rule_version=str(data["rule_version"]),
                                   amount_cents=data.get("amount_cents"), approved_at=rfc3339(event.time))
            elif name == "FundsDisbursed":
                # The time funding recorded the payment, not the time this record is read:
                # a replay opens the same plan.
                app.funds_disbursed(_project_id(event), tranche=int(data["tranche"]), paid_at=event.time)

    return handle
