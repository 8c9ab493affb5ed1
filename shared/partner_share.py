"""What a partner receives of each event: one allow-list, for the partner feed on Kafka and the APIs.

Only the event types in `SHARED` are shared, each with only the fields listed there, and only to
the roles listed there: an allow-list, so a new event type or field stays private until someone
decides a partner needs it. Free text (justifications, observations, recommendations,
descriptions), people (the promoter's pseudonym and ciphertext, officers' user ids, payees) and
internal references never leave. The partners service publishes the feed with it
(`services/partners/feeds.py`); followup shows a partner what it shows of a follow-up with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPORT_STRUCTURE = "support_structure"
LOCAL_OPERATOR = "local_operator"
BOTH = frozenset({SUPPORT_STRUCTURE, LOCAL_OPERATOR})


@dataclass(frozen=True)
class Share:
    """What of one event type a partner receives: these data fields, if it plays one of these roles.

    `before_assignment`: sent even though it happened before the dossier was assigned (the
    assignment's own request, which says what the dossier is: country, region, sector).
    """

    fields: tuple[str, ...]
    roles: frozenset[str] = BOTH
    before_assignment: bool = False


# "<service>.<EventName>" -> what partners receive of it. Anything else is never published.
SHARED: dict[str, Share] = {
    # intake: the dossier's progress (never the promoter's data, title, description or summaries)
    "intake.ProjectSubmitted": Share(("country", "french_region", "sector", "requested_amount_cents",
                                      "own_contribution_cents", "planned_jobs")),
    "intake.EligibilityAssessed": Share(("eligible", "rule_version", "country", "french_region", "sector")),
    "intake.PartnersRecorded": Share(("support_structure_id", "local_operator_id")),
    "intake.SkillsReviewCompleted": Share((), frozenset({SUPPORT_STRUCTURE})),
    "intake.TrainingRecorded": Share(("course", "hours", "completed_on"), frozenset({SUPPORT_STRUCTURE})),
    "intake.BusinessPlanRecorded": Share(("own_contribution_cents", "planned_jobs")),
    "intake.FeasibilityStudyRequested": Share(("local_operator_id",)),
    "intake.FeasibilityStudyCompleted": Share(("conclusion",)),
    "intake.ProjectSentToCommittee": Share(("requested_amount_cents", "own_contribution_cents", "planned_jobs")),
    "intake.ProjectWithdrawn": Share(("previous_status",)),
    "intake.ProjectClosed": Share(("previous_status",)),
    # partners: the assignment itself
    "partners.AssignmentRequested": Share(("project_id", "country", "french_region", "sector"),
                                          before_assignment=True),
    "partners.PartnersAssigned": Share(("project_id", "support_structure_id", "local_operator_id")),
    "partners.AssignmentEnded": Share(("project_id",)),
    # funding: decisions and money that concern the partners' work (no officers, payees, justifications)
    "funding.FeasibilityGrantAwarded": Share(("amount_cents", "rule_version")),
    "funding.FeasibilityGrantRejected": Share(("rule_version",)),
    "funding.FinancingRequested": Share(("requested_amount_cents",)),
    "funding.FinancingApproved": Share(("amount_cents", "rule_version")),
    "funding.FinancingDeferred": Share(("rule_version",)),
    "funding.FinancingRejected": Share(("rule_version",)),
    "funding.AgreementSigned": Share(("signed_on", "operator_id", "amount_cents"), frozenset({LOCAL_OPERATOR})),
    "funding.OperatorFeesCommitted": Share(("amount_cents", "operator_id"), frozenset({LOCAL_OPERATOR})),
    "funding.FundsDisbursed": Share(("tranche", "amount_cents")),
    "funding.SpendingEvidenceRecorded": Share(("tranche", "total_cents"), frozenset({LOCAL_OPERATOR})),
    "funding.TrancheReconciled": Share(("tranche", "disbursed_cents", "evidenced_cents"),
                                       frozenset({LOCAL_OPERATOR})),
    "funding.DisbursementSuspended": Share(("alert_id",)),
    "funding.DisbursementResumed": Share(("alert_id",)),
    # followup: the year after the launch, as the local operator and the support structure follow it
    "followup.FollowUpOpened": Share(("project_id", "opened_on", "visit_months", "visits", "local_operator_id")),
    "followup.BusinessLaunched": Share(("project_id", "launched_on", "legal_form", "initial_jobs")),
    "followup.FollowUpVisitLogged": Share(("project_id", "visit_id", "visit_number", "month", "due_on", "on_time",
                                           "visited_on", "business_status", "jobs_paid", "jobs_family",
                                           "revenue_band")),
    "followup.FollowUpVisitOverdue": Share(("project_id", "visit_number", "month", "due_on", "flagged_on")),
    "followup.AlertRaised": Share(("project_id", "alert_id", "visit_id")),
    "followup.AlertResolved": Share(("project_id", "alert_id", "visit_id")),
    "followup.FollowUpCompleted": Share(("project_id", "completed_on", "outcome", "jobs_created", "visits_done",
                                         "visits_planned")),
    "followup.SurveyRecorded": Share(("project_id", "surveyed_on", "business_status", "jobs_paid", "jobs_family",
                                      "revenue_band")),
}


def shared_fields(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of `data` (the state an event `"<service>.<EventName>"` recorded) a partner may read."""
    share = SHARED.get(name)
    return {field: data[field] for field in share.fields if field in data} if share else {}
