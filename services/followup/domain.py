"""Followup's domain: the year after a financed business is launched. Pure: no I/O, no clock.

Each public method is a verb of the programme; it checks the rules, then
triggers one event whose (private, decorated) method only changes state, so
replaying old events never re-checks rules that may have changed. Whatever
depends on the day takes it as an argument (`today`): the application passes
its clock, the tests a date of their choosing.

- `FollowUp`: one dossier's follow-up file, its id the dossier's (project's)
  id. It first records what followup learns of the dossier from the other
  services (country, times, local operator, rule version), then the plan
  opened when the first tranche is paid, the launch, the visits (offline ones
  included: a visit is identified by the id its device gave it), overdue
  visits, alerts, the outcome and the optional survey at month 24.
- `VisitRules`: the visit months of every published version of the
  programme rules, per country, as funding published them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.domain import InvalidValue, require

# The historical plan (PMIE): visits 1, 3, 6, 9 and 12 months after the launch. Used when
# the dossier's rule version is unknown to followup or names no months for its country.
DEFAULT_VISIT_MONTHS = (1, 3, 6, 9, 12)
DEFAULT_RULE_VERSION = "default"
SURVEY_MONTH = 24
MAX_TEXT = 5000
MAX_JOBS = 10_000


class BusinessStatus(StrEnum):
    active = "active"
    in_difficulty = "in_difficulty"
    closed = "closed"


class RevenueBand(StrEnum):
    """Monthly revenue, in euros: a band is enough and is what operators can honestly tell."""

    none = "none"
    under_150 = "under_150"
    from_150_to_500 = "150_to_500"
    from_500_to_1500 = "500_to_1500"
    over_1500 = "over_1500"


class Outcome(StrEnum):
    """How the follow-up ended (the business active, in difficulty or closed, abandoned...)."""

    business_active = "business_active"
    business_in_difficulty = "business_in_difficulty"
    business_closed = "business_closed"
    abandoned = "abandoned"
    re_migrated = "re_migrated"


class Stage(StrEnum):
    awaiting_funds = "awaiting_funds"  # known from upstream, no tranche paid yet
    opened = "opened"  # plan opened, business not launched yet
    launched = "launched"
    completed = "completed"


# Why an alert is raised: the business status the visit found.
ALERT_REASONS = {BusinessStatus.in_difficulty: "business_in_difficulty", BusinessStatus.closed: "business_closed"}
_OUTCOME_OF_STATUS = {BusinessStatus.active: Outcome.business_active,
                      BusinessStatus.in_difficulty: Outcome.business_in_difficulty,
                      BusinessStatus.closed: Outcome.business_closed}


# --- values ---------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day `months` later; the month's last day when it is shorter (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    next_month = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, min(day.day, (next_month - timedelta(days=1)).day))


def plan_visits(start: date, months: list[int] | tuple[int, ...]) -> list[dict[str, Any]]:
    """The planned visits: number (1, 2, ...), month after `start` and due date."""
    return [{"number": n, "month": m, "due_on": add_months(start, m).isoformat()}
            for n, m in enumerate(months, start=1)]


def _text(field_name: str, value: Any, max_length: int = MAX_TEXT, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise InvalidValue(field_name, "must not be empty")
    value = value.strip()
    if len(value) > max_length:
        raise InvalidValue(field_name, f"must be at most {max_length} characters")
    return value


def _jobs(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_JOBS:
        raise InvalidValue(field_name, f"must be a whole number from 0 to {MAX_JOBS}")
    return value


def _day(field_name: str, value: Any, today: date, *, not_before: date | None = None,
         not_before_what: str = "") -> date:
    if not isinstance(value, date):
        raise InvalidValue(field_name, "must be a date")
    if value > today:
        raise InvalidValue(field_name, "cannot be in the future")
    if not_before is not None and value < not_before:
        raise InvalidValue(field_name, f"cannot be before {not_before_what} ({not_before.isoformat()})")
    return value


@dataclass(frozen=True)
class VisitReport:
    """What an operator found at a visit, as sent (possibly days later, from a device that was offline)."""

    visited_on: date
    business_status: BusinessStatus
    jobs_paid: int
    jobs_family: int
    revenue_band: RevenueBand
    observations: str = ""
    recommendations: str = ""

    @classmethod
    def checked(cls, visited_on: Any, business_status: Any, jobs_paid: Any, jobs_family: Any, revenue_band: Any,
                observations: Any = "", recommendations: Any = "") -> VisitReport:
        try:
            status = BusinessStatus(business_status)
        except ValueError:
            raise InvalidValue("business_status", f"one of {', '.join(BusinessStatus)}") from None
        try:
            band = RevenueBand(revenue_band)
        except ValueError:
            raise InvalidValue("revenue_band", f"one of {', '.join(RevenueBand)}") from None
        if not isinstance(visited_on, date):
            raise InvalidValue("visited_on", "must be a date")
        return cls(visited_on=visited_on, business_status=status, jobs_paid=_jobs("jobs_paid", jobs_paid),
                   jobs_family=_jobs("jobs_family", jobs_family), revenue_band=band,
                   observations=_text("observations", observations, empty=True),
                   recommendations=_text("recommendations", recommendations, empty=True))

    def as_data(self) -> dict[str, Any]:
        """The report as an event's fields (plain JSON values)."""
        return {"visited_on": self.visited_on.isoformat(), "business_status": self.business_status.value,
                "jobs_paid": self.jobs_paid, "jobs_family": self.jobs_family,
                "revenue_band": self.revenue_band.value, "observations": self.observations,
                "recommendations": self.recommendations}


_REPORT_FIELDS = ("visited_on", "business_status", "jobs_paid", "jobs_family", "revenue_band", "observations",
                  "recommendations")


def _report_of(visit: dict[str, Any]) -> dict[str, Any]:
    return {k: visit[k] for k in _REPORT_FIELDS}


def alert_id_for(project_id: str, visit_id: str) -> str:
    """An alert's id, derived from the visit that raised it: the same visit always names the same alert."""
    return str(uuid5(NAMESPACE_URL, f"passerelle/followup/{project_id}/alert/{visit_id}"))


# --- the follow-up of a dossier -------------------------------------------------------------


class FollowUp(Aggregate):
    """One dossier's follow-up file. Its id is the dossier's (project's) id."""

    @staticmethod
    def create_id(project_id: UUID) -> UUID:
        return project_id

    # Followup learns of a dossier from whichever upstream event comes first (the topics of
    # intake, partners and funding are read side by side, in no set order between them).
    @event("DossierNoted")
    def __init__(self, project_id: UUID):
        self.project_id = str(project_id)
        self.stage = Stage.awaiting_funds
        self.country: str | None = None
        self.submitted_at: str | None = None
        self.sent_to_committee_at: str | None = None
        self.planned_own_contribution_cents: int | None = None
        self.planned_jobs: int | None = None
        self.local_operator_id: str | None = None
        self.support_structure_id: str | None = None
        self.rule_version: str | None = None
        self.approved_amount_cents: int | None = None
        self.opened_on: str | None = None
        self.plan_rule_version: str | None = None  # the version the visit months come from
        self.first_tranche_at: str | None = None
        self.visits_planned: list[dict[str, Any]] = []
        self.launch: dict[str, Any] | None = None
        self.visits: dict[str, dict[str, Any]] = {}  # by visit id, in the order logged
        self.conflicts: dict[str, list[dict[str, Any]]] = {}  # by visit id: versions received, unresolved
        self.overdue: list[dict[str, Any]] = []  # (number, due_on) flagged once each
        self.open_alert: dict[str, Any] | None = None
        self.alerts: list[dict[str, Any]] = []
        self.outcome: dict[str, Any] | None = None
        self.survey: dict[str, Any] | None = None

    # --- what the other services told --------------------------------------------------

    def note_submission(self, country: str, submitted_at: str, own_contribution_cents: int,
                        planned_jobs: int) -> bool:
        """Intake's ProjectSubmitted. False when already known (a redelivery)."""
        if self.submitted_at is not None:
            return False
        self._submission_noted(project_id=self.project_id, country=country, submitted_at=submitted_at,
                               own_contribution_cents=own_contribution_cents, planned_jobs=planned_jobs)
        return True

    @event("SubmissionNoted")
    def _submission_noted(self, project_id: str, country: str, submitted_at: str, own_contribution_cents: int,
                          planned_jobs: int) -> None:
        self.country = country
        self.submitted_at = submitted_at
        self.planned_own_contribution_cents = own_contribution_cents
        self.planned_jobs = planned_jobs

    def note_committee(self, sent_at: str, own_contribution_cents: int, planned_jobs: int) -> bool:
        """Intake's ProjectSentToCommittee: the business plan's own contribution and jobs, as sent."""
        if self.sent_to_committee_at is not None:
            return False
        self._committee_noted(project_id=self.project_id, sent_at=sent_at,
                              own_contribution_cents=own_contribution_cents, planned_jobs=planned_jobs)
        return True

    @event("CommitteeNoted")
    def _committee_noted(self, project_id: str, sent_at: str, own_contribution_cents: int, planned_jobs: int) -> None:
        self.sent_to_committee_at = sent_at
        self.planned_own_contribution_cents = own_contribution_cents
        self.planned_jobs = planned_jobs

    def note_local_operator(self, local_operator_id: str, support_structure_id: str | None) -> bool:
        """Partners' PartnersAssigned: the local operator follows the business once it is launched."""
        if self.local_operator_id == local_operator_id and self.support_structure_id == support_structure_id:
            return False
        self._local_operator_noted(project_id=self.project_id, local_operator_id=local_operator_id,
                                   support_structure_id=support_structure_id)
        return True

    @event("LocalOperatorNoted")
    def _local_operator_noted(self, project_id: str, local_operator_id: str, support_structure_id: str | None) -> None:
        self.local_operator_id = local_operator_id
        self.support_structure_id = support_structure_id

    def note_financing(self, rule_version: str, amount_cents: int | None, approved_at: str) -> bool:
        """Funding's FinancingApproved: the rule version the plan follows."""
        if self.rule_version is not None:
            return False
        self._financing_noted(project_id=self.project_id, rule_version=rule_version, amount_cents=amount_cents,
                              approved_at=approved_at)
        return True

    @event("FinancingNoted")
    def _financing_noted(self, project_id: str, rule_version: str, amount_cents: int | None, approved_at: str) -> None:
        self.rule_version = rule_version
        self.approved_amount_cents = amount_cents

    # --- the plan ----------------------------------------------------------------------

    def open(self, first_tranche_at: str, paid_on: date, visit_months: list[int] | tuple[int, ...],
             rule_version: str) -> bool:
        """The first tranche is paid: the follow-up opens with its plan of visits.

        Until the business is launched, the visits are due counted from the payment;
        the launch dates them again. False when the plan is already open (a redelivery,
        or a later tranche).
        """
        if self.stage != Stage.awaiting_funds:
            return False
        months = sorted(set(visit_months)) or list(DEFAULT_VISIT_MONTHS)
        self._opened(project_id=self.project_id, opened_on=paid_on.isoformat(), first_tranche_at=first_tranche_at,
                     rule_version=rule_version, visit_months=months, visits=plan_visits(paid_on, months),
                     local_operator_id=self.local_operator_id)
        return True

    @event("FollowUpOpened")
    def _opened(self, project_id: str, opened_on: str, first_tranche_at: str, rule_version: str,
                visit_months: list[int], visits: list[dict[str, Any]], local_operator_id: str | None) -> None:
        self.stage = Stage.opened
        self.opened_on = opened_on
        self.first_tranche_at = first_tranche_at
        self.plan_rule_version = rule_version
        self.visits_planned = [dict(v) for v in visits]

    def _require_open(self) -> None:
        require(self.stage in (Stage.opened, Stage.launched), "follow_up_is_open",
                "no follow-up is open for this dossier" if self.stage == Stage.awaiting_funds
                else "the follow-up is completed")

    def launch_business(self, launched_on: date, legal_form: str, registration: str, initial_jobs: int,
                        own_contribution_cents: int | None, today: date) -> None:
        """The business starts: the visits fall due counted from this date."""
        self._require_open()
        require(self.launch is None, "launch_once", "the business is already launched")
        launched_on = _day("launched_on", launched_on, today)
        if own_contribution_cents is not None and (
                isinstance(own_contribution_cents, bool) or not isinstance(own_contribution_cents, int)
                or not 0 <= own_contribution_cents <= 10**10):
            raise InvalidValue("own_contribution_cents", "a whole number of euro cents, not negative")
        months = [v["month"] for v in self.visits_planned]
        self._launched(project_id=self.project_id, launched_on=launched_on.isoformat(),
                       legal_form=_text("legal_form", legal_form, 100),
                       registration=_text("registration", registration, 100),
                       initial_jobs=_jobs("initial_jobs", initial_jobs),
                       own_contribution_cents=own_contribution_cents, visits=plan_visits(launched_on, months))

    @event("BusinessLaunched")
    def _launched(self, project_id: str, launched_on: str, legal_form: str, registration: str, initial_jobs: int,
                  own_contribution_cents: int | None, visits: list[dict[str, Any]]) -> None:
        self.stage = Stage.launched
        self.launch = {"launched_on": launched_on, "legal_form": legal_form, "registration": registration,
                       "initial_jobs": initial_jobs, "own_contribution_cents": own_contribution_cents}
        self.visits_planned = [dict(v) for v in visits]

    # --- visits ------------------------------------------------------------------------

    def _next_planned(self) -> dict[str, Any] | None:
        done = {v["visit_number"] for v in self.visits.values() if v["visit_number"] is not None}
        return next((p for p in self.visits_planned if p["number"] not in done), None)

    def log_visit(self, visit_id: str, report: VisitReport, today: date) -> str:
        """Record a visit, sent at once or days later from a device that was offline.

        `visit_id` is the id the device gave the visit: the same visit sent again is
        recorded once ("duplicate"); another version of it is never silently taken: the
        conflict is recorded ("conflict") and shown until an officer resolves it.
        A visit fulfils the next planned visit; a business in difficulty or closed raises
        an alert, a later visit finding it active resolves it; the last planned visit
        completes the follow-up. Returns "logged", "duplicate" or "conflict".
        """
        visit_id = _text("visit_id", visit_id, 100)
        known = self.visits.get(visit_id)
        if known is not None:
            received = report.as_data()
            if _report_of(known) == received or received in self.conflicts.get(visit_id, []):
                return "duplicate"
            self._conflict_recorded(project_id=self.project_id, visit_id=visit_id, received=received)
            return "conflict"
        self._require_open()
        require(self.launch is not None, "visits_after_launch", "record the business's launch before its visits")
        assert self.launch is not None
        _day("visited_on", report.visited_on, today, not_before=date.fromisoformat(self.launch["launched_on"]),
             not_before_what="the launch")
        planned = self._next_planned()
        due_on = planned["due_on"] if planned else None
        self._visit_logged(project_id=self.project_id, visit_id=visit_id,
                           visit_number=planned["number"] if planned else None,
                           month=planned["month"] if planned else None, due_on=due_on,
                           on_time=due_on is not None and report.visited_on.isoformat() <= due_on,
                           local_operator_id=self.local_operator_id, **report.as_data())
        self._alert_after(visit_id, report.business_status)
        if planned is not None and self._next_planned() is None:
            self._complete(report.visited_on, _OUTCOME_OF_STATUS[report.business_status])
        return "logged"

    @event("FollowUpVisitLogged")
    def _visit_logged(self, project_id: str, visit_id: str, visit_number: int | None, month: int | None,
                      due_on: str | None, on_time: bool, local_operator_id: str | None, visited_on: str,
                      business_status: str, jobs_paid: int, jobs_family: int, revenue_band: str,
                      observations: str, recommendations: str) -> None:
        self.visits[visit_id] = {
            "visit_id": visit_id, "visit_number": visit_number, "month": month, "due_on": due_on, "on_time": on_time,
            "visited_on": visited_on, "business_status": business_status, "jobs_paid": jobs_paid,
            "jobs_family": jobs_family, "revenue_band": revenue_band, "observations": observations,
            "recommendations": recommendations,
        }

    @event("VisitConflictRecorded")
    def _conflict_recorded(self, project_id: str, visit_id: str, received: dict[str, Any]) -> None:
        self.conflicts.setdefault(visit_id, []).append(dict(received))

    def resolve_conflict(self, visit_id: str, keep: str) -> None:
        """An officer settles a visit received in several versions: keep the recorded one, or the
        last one received. Keeping another version may raise or resolve an alert, as a visit would."""
        require(visit_id in self.conflicts, "conflict_exists", f"the visit {visit_id} has no conflict to resolve")
        if keep not in ("recorded", "received"):
            raise InvalidValue("keep", "one of recorded, received")
        visit = self.visits[visit_id]
        kept = _report_of(visit) if keep == "recorded" else self.conflicts[visit_id][-1]
        self._conflict_resolved(project_id=self.project_id, visit_id=visit_id, kept=keep, visit=kept)
        latest = list(self.visits)[-1] == visit_id
        if keep == "received" and latest and self.stage != Stage.completed:
            self._alert_after(visit_id, BusinessStatus(kept["business_status"]))

    @event("VisitConflictResolved")
    def _conflict_resolved(self, project_id: str, visit_id: str, kept: str, visit: dict[str, Any]) -> None:
        current = self.visits[visit_id]
        current.update(visit)
        current["on_time"] = current["due_on"] is not None and current["visited_on"] <= current["due_on"]
        del self.conflicts[visit_id]

    # --- overdue visits ----------------------------------------------------------------

    def overdue_visits(self, today: date) -> list[dict[str, Any]]:
        """Planned visits whose due date has passed without a visit and that were not flagged yet."""
        if self.stage not in (Stage.opened, Stage.launched):
            return []
        done = {v["visit_number"] for v in self.visits.values()}
        flagged = {(o["visit_number"], o["due_on"]) for o in self.overdue}
        return [p for p in self.visits_planned
                if p["number"] not in done and p["due_on"] < today.isoformat()
                and (p["number"], p["due_on"]) not in flagged]

    def flag_overdue(self, today: date) -> int:
        """FollowUpVisitOverdue for each visit newly overdue; how many.

        Once per planned visit and due date: the flags are part of the aggregate's state,
        rebuilt from its events, so a scheduler that restarts or runs twice flags nothing again.
        A launch that dates the plan again makes a visit due anew (a new due date).
        """
        late = self.overdue_visits(today)
        for planned in late:
            self._overdue(project_id=self.project_id, visit_number=planned["number"], month=planned["month"],
                          due_on=planned["due_on"], flagged_on=today.isoformat(),
                          local_operator_id=self.local_operator_id)
        return len(late)

    @event("FollowUpVisitOverdue")
    def _overdue(self, project_id: str, visit_number: int, month: int, due_on: str, flagged_on: str,
                 local_operator_id: str | None) -> None:
        self.overdue.append({"visit_number": visit_number, "due_on": due_on, "flagged_on": flagged_on})

    def next_due_on(self) -> str | None:
        """The earliest due date still to watch (not visited, not flagged): what the scheduler waits for."""
        if self.stage not in (Stage.opened, Stage.launched):
            return None
        done = {v["visit_number"] for v in self.visits.values()}
        flagged = {(o["visit_number"], o["due_on"]) for o in self.overdue}
        pending = [p["due_on"] for p in self.visits_planned
                   if p["number"] not in done and (p["number"], p["due_on"]) not in flagged]
        return min(pending, default=None)

    # --- alerts --------------------------------------------------------------------------

    def _alert_after(self, visit_id: str, status: BusinessStatus) -> None:
        """One alert at a time: raised by a visit finding trouble, resolved by one finding the business active."""
        if status in ALERT_REASONS and self.open_alert is None:
            self._alert_raised(project_id=self.project_id, alert_id=alert_id_for(self.project_id, visit_id),
                               reason=ALERT_REASONS[status], visit_id=visit_id,
                               local_operator_id=self.local_operator_id)
        elif status == BusinessStatus.active and self.open_alert is not None:
            self._alert_resolved(project_id=self.project_id, alert_id=self.open_alert["alert_id"], visit_id=visit_id)

    @event("AlertRaised")
    def _alert_raised(self, project_id: str, alert_id: str, reason: str, visit_id: str,
                      local_operator_id: str | None) -> None:
        self.open_alert = {"alert_id": alert_id, "reason": reason, "visit_id": visit_id}
        self.alerts.append({**self.open_alert, "resolved_by_visit_id": None})

    @event("AlertResolved")
    def _alert_resolved(self, project_id: str, alert_id: str, visit_id: str) -> None:
        for alert in self.alerts:
            if alert["alert_id"] == alert_id:
                alert["resolved_by_visit_id"] = visit_id
        self.open_alert = None

    # --- the end -------------------------------------------------------------------------

    @property
    def jobs_now(self) -> int | None:
        """Paid and family jobs at the latest visit (None before any)."""
        if not self.visits:
            return None
        latest = max(self.visits.values(), key=lambda v: v["visited_on"])
        return latest["jobs_paid"] + latest["jobs_family"]

    def complete(self, outcome: Outcome | str, completed_on: date, today: date) -> None:
        """An officer ends the follow-up before the plan's end (abandoned, re-migrated, closed...)."""
        self._require_open()
        require(self.launch is not None, "complete_after_launch", "a follow-up ends after the business's launch")
        try:
            outcome = Outcome(outcome)
        except ValueError:
            raise InvalidValue("outcome", f"one of {', '.join(Outcome)}") from None
        assert self.launch is not None
        _day("completed_on", completed_on, today, not_before=date.fromisoformat(self.launch["launched_on"]),
             not_before_what="the launch")
        self._complete(completed_on, outcome)

    def _complete(self, completed_on: date, outcome: Outcome) -> None:
        done = [v for v in self.visits.values() if v["visit_number"] is not None]
        self._completed(project_id=self.project_id, completed_on=completed_on.isoformat(), outcome=outcome.value,
                        jobs_created=self.jobs_now or 0, visits_done=len(done), visits_planned=len(self.visits_planned))

    @event("FollowUpCompleted")
    def _completed(self, project_id: str, completed_on: str, outcome: str, jobs_created: int, visits_done: int,
                   visits_planned: int) -> None:
        self.stage = Stage.completed
        self.outcome = {"completed_on": completed_on, "outcome": outcome, "jobs_created": jobs_created,
                        "visits_done": visits_done, "visits_planned": visits_planned}

    def record_survey(self, report: VisitReport, today: date) -> None:
        """The optional survey, 24 months after the launch: is the business still running?"""
        require(self.launch is not None, "survey_after_launch", "the business was never launched")
        require(self.survey is None, "survey_once", "the survey is already recorded")
        assert self.launch is not None
        from_month = add_months(date.fromisoformat(self.launch["launched_on"]), SURVEY_MONTH - 1)
        _day("surveyed_on", report.visited_on, today)
        require(report.visited_on >= from_month, "survey_at_month_24",
                f"the survey is made from month {SURVEY_MONTH - 1} after the launch ({from_month.isoformat()})")
        data = report.as_data()
        data["surveyed_on"] = data.pop("visited_on")
        self._survey_recorded(project_id=self.project_id, **data)

    @event("SurveyRecorded")
    def _survey_recorded(self, project_id: str, surveyed_on: str, business_status: str, jobs_paid: int,
                         jobs_family: int, revenue_band: str, observations: str, recommendations: str) -> None:
        self.survey = {"surveyed_on": surveyed_on, "business_status": business_status, "jobs_paid": jobs_paid,
                       "jobs_family": jobs_family, "revenue_band": revenue_band}

    def assigned_to(self, partner_id: str | None) -> bool:
        return partner_id is not None and partner_id == self.local_operator_id


# --- the visit months of the programme rules ---------------------------------------------------


class VisitRules(Aggregate):
    """The visit months of each version of the programme rules funding published, per country."""

    ID = UUID("0c5e2d47-9b1f-5a36-8e4d-2f6a1b3c5d7e")

    @staticmethod
    def create_id() -> UUID:
        return VisitRules.ID

    @event("VisitRulesOpened")
    def __init__(self) -> None:
        self.versions: dict[str, dict[str, list[int]]] = {}

    def note(self, version: str, countries: dict[str, Any]) -> bool:
        """Funding's ProgrammeRulesPublished. False when this version is already noted."""
        if version in self.versions:
            return False
        months = {}
        for country, rules in countries.items():
            found = rules.get("visit_months") if isinstance(rules, dict) else None
            if isinstance(found, list) and all(isinstance(m, int) and not isinstance(m, bool) and m > 0
                                               for m in found):
                months[country] = sorted(set(found))
        self._noted(version=version, visit_months=months)
        return True

    @event("VisitRulesNoted")
    def _noted(self, version: str, visit_months: dict[str, list[int]]) -> None:
        self.versions[version] = {k: list(v) for k, v in visit_months.items()}

    def visit_months(self, version: str | None, country: str | None) -> tuple[list[int], str]:
        """The months of `version` for `country`, and the version they come from; the default plan
        when followup does not know the version or the version names no months for the country."""
        found = self.versions.get(version or "", {}).get(country or "")
        if found:
            return list(found), str(version)
        return list(DEFAULT_VISIT_MONTHS), DEFAULT_RULE_VERSION
