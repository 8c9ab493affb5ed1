"""The programme's outcome indicators, computed from the follow-ups' events. Pure: no I/O.

The read model keeps every follow-up event with its time (`followup_facts_v1`);
the application hands over those recorded up to the moment asked about, so the
same question about a past date gives the answer as it stood then.

Definitions (what funders ask for, docs/programme.md):
- dossiers followed: follow-ups opened (first tranche paid) by that moment;
- visits due: planned visits whose due date has come; done: planned visits
  logged; on time: logged no later than their due date; overdue: due, not done;
- active at 6 and 12 months: among the visits planned at that month and done,
  those that found the business active; at 24 months: the optional survey;
- jobs created per project: paid and family jobs at the end of the follow-ups
  completed (the historical benchmark is about 3);
- own contribution: planned in the business plan, and put in as told at launch;
- days from submission to committee, and from committee to the first tranche;
- alerts open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from statistics import mean, median
from typing import Any

MONTHS_ACTIVE_AT = (6, 12)


@dataclass
class Dossier:
    """One dossier's follow-up, folded from its events."""

    opened: bool = False
    submitted_at: datetime | None = None
    sent_at: datetime | None = None
    first_tranche_at: datetime | None = None
    planned_own_contribution_cents: int | None = None
    own_contribution_put_in_cents: int | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)
    visits: dict[str, dict[str, Any]] = field(default_factory=dict)
    survey_status: str | None = None
    completed_jobs: int | None = None
    alert_open: bool = False

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "SubmissionNoted":
            self.submitted_at = _moment(data["submitted_at"])
            self.planned_own_contribution_cents = self.planned_own_contribution_cents \
                if self.sent_at else data["own_contribution_cents"]
        elif kind == "CommitteeNoted":
            self.sent_at = _moment(data["sent_at"])
            self.planned_own_contribution_cents = data["own_contribution_cents"]
        elif kind == "FollowUpOpened":
            self.opened = True
            self.first_tranche_at = _moment(data["first_tranche_at"])
            self.plan = data["visits"]
        elif kind == "BusinessLaunched":
            self.plan = data["visits"]
            self.own_contribution_put_in_cents = data.get("own_contribution_cents")
        elif kind == "FollowUpVisitLogged":
            self.visits[data["visit_id"]] = dict(data)
        elif kind == "VisitConflictResolved":
            visit = self.visits[data["visit_id"]]
            visit.update(data["visit"])
            visit["on_time"] = visit["due_on"] is not None and visit["visited_on"] <= visit["due_on"]
        elif kind == "AlertRaised":
            self.alert_open = True
        elif kind == "AlertResolved":
            self.alert_open = False
        elif kind == "FollowUpCompleted":
            self.completed_jobs = data["jobs_created"]
        elif kind == "SurveyRecorded":
            self.survey_status = data["business_status"]

    def visits_by_number(self) -> dict[int, dict[str, Any]]:
        return {v["visit_number"]: v for v in self.visits.values() if v["visit_number"] is not None}


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _days(pairs: Iterable[tuple[datetime | None, datetime | None]]) -> dict[str, Any]:
    days = [(b - a).total_seconds() / 86400 for a, b in pairs if a is not None and b is not None]
    return {"dossiers": len(days), "mean": round(mean(days), 1) if days else None,
            "median": round(median(days), 1) if days else None}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def fold(events: Iterable[tuple[str, dict[str, Any]]]) -> Dossier:
    dossier = Dossier()
    for kind, data in events:
        dossier.apply(kind, data)
    return dossier


def compute(dossiers: Iterable[Dossier], as_of: date) -> dict[str, Any]:
    """The indicators over `dossiers` (each folded from its events up to the moment asked about)."""
    followed = [d for d in dossiers if d.opened]
    today = as_of.isoformat()
    due = done = on_time = overdue = 0
    active_at: dict[int, list[bool]] = {m: [] for m in MONTHS_ACTIVE_AT}
    for d in followed:
        logged = d.visits_by_number()
        for planned in d.plan:
            visit = logged.get(planned["number"])
            if visit is not None:
                done += 1
                on_time += bool(visit["on_time"])
                if planned["month"] in active_at:
                    active_at[planned["month"]].append(visit["business_status"] == "active")
            if planned["due_on"] <= today:
                due += 1
                overdue += visit is None
    surveyed = [d.survey_status == "active" for d in followed if d.survey_status is not None]
    completed = [d.completed_jobs for d in followed if d.completed_jobs is not None]
    planned_own = [d.planned_own_contribution_cents for d in followed if d.planned_own_contribution_cents is not None]
    put_in = [d.own_contribution_put_in_cents for d in followed if d.own_contribution_put_in_cents is not None]

    def active(observed: list[bool]) -> dict[str, Any]:
        return {"observed": len(observed), "active": sum(observed), "share": _share(sum(observed), len(observed))}

    return {
        "dossiers_followed": len(followed),
        "follow_ups_completed": len(completed),
        "visits": {"due": due, "done": done, "done_on_time": on_time, "overdue": overdue,
                   "done_share_of_due": _share(min(done, due), due) if due else None,
                   "on_time_share_of_done": _share(on_time, done)},
        "active_at_months": {**{str(m): active(v) for m, v in active_at.items()}, "24": active(surveyed)},
        "jobs_created": {"follow_ups_completed": len(completed), "total": sum(completed),
                         "per_project": round(mean(completed), 2) if completed else None},
        "own_contribution": {"planned_cents": sum(planned_own), "dossiers_planned": len(planned_own),
                             "put_in_cents": sum(put_in), "dossiers_put_in": len(put_in)},
        "days_submission_to_committee": _days((d.submitted_at, d.sent_at) for d in followed),
        "days_committee_to_first_tranche": _days((d.sent_at, d.first_tranche_at) for d in followed),
        "alerts_open": sum(d.alert_open for d in followed),
    }
