"""What funding does with other services' events.

From intake: a person it knows may receive return aid, an eligible dossier is
registered (its country decides the rules and envelopes), a requested feasibility study gets its grant or a reasoned refusal,
a dossier sent to the committee asks for financing, a withdrawn or closed one
ends it (its unpaid reservation goes back to the envelope). From followup: an alert on
a business suspends its tranches until it is resolved.
"""

from __future__ import annotations

from uuid import UUID

from services.funding.application import FundingApplication
from shared.envelope import CloudEvent
from shared.topics import event_topic

TOPICS = [event_topic("intake"), event_topic("followup")]
# Intake's events that tell of a person it knows (their `person_id`): return aid is only for them.
PERSON_EVENTS = frozenset({"ProjectSubmitted", "PersonRegistered"})
# Intake's officer confirmed two records are one person, or took it back: their return aids count together.
MERGE_EVENTS = frozenset({"PersonsMerged", "PersonsUnmerged"})


def handler(app: FundingApplication):
    def handle(event: CloudEvent) -> None:
        # Intake's and followup's events are keyed and subjected by the dossier's (project's) id.
        if event.service == "intake":
            if event.name in PERSON_EVENTS and event.data.get("person_id"):
                app.learn_person(UUID(str(event.data["person_id"])))
            if event.name in MERGE_EVENTS:
                # A Person's events are subjected by the person's id; the other record is in the data.
                app.record_merge(UUID(event.subject), UUID(str(event.data["other_person_id"])),
                                 merged=event.name == "PersonsMerged")
            elif event.name == "EligibilityAssessed" and event.data.get("eligible") is True:
                app.register_dossier(UUID(event.subject), country=event.data["country"],
                                     rule_version=event.data["rule_version"])
            elif event.name == "FeasibilityStudyRequested":
                # The year of the request, not of the processing: a replay picks the same envelope.
                app.grant_feasibility_study(UUID(event.subject), event.data.get("local_operator_id"),
                                            year=event.time.year, study_request=event.aggregateversion)
            elif event.name == "ProjectSentToCommittee":
                # The dossier's version as sent is the one every decision on it relies on.
                app.request_financing(UUID(event.subject), event.data["requested_amount_cents"],
                                      dossier_version=event.aggregateversion)
            elif event.name in ("ProjectWithdrawn", "ProjectClosed"):
                # The promoter's own words stay in intake: funding only needs to know it ended.
                reason = "dossier_withdrawn" if event.name == "ProjectWithdrawn" else \
                    f"dossier_closed: {event.data.get('reason', 'unknown')}"
                app.end_financing(UUID(event.subject), reason)
        elif event.service == "followup":
            alert_id = str(event.data.get("alert_id") or event.subject)
            if event.name == "AlertRaised":
                app.suspend_disbursements(UUID(event.subject), alert_id, str(event.data.get("reason") or ""))
            elif event.name == "AlertResolved":
                app.resume_disbursements(UUID(event.subject), alert_id)

    return handle
