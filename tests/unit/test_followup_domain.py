"""Followup's rules, without I/O: the plan, launch, visits (offline duplicates and conflicts),
overdue visits with a controllable clock, alerts, completion, the survey, and the indicators."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

import pytest

from services.followup import indicators
from services.followup.domain import (
    DEFAULT_VISIT_MONTHS,
    FollowUp,
    Stage,
    VisitReport,
    VisitRules,
    add_months,
    alert_id_for,
)
from shared.domain import InvalidValue, RuleViolated

PAID = datetime(2026, 1, 10, 9, 30, tzinfo=timezone.utc)
LAUNCH = date(2026, 2, 1)


def report(on: date, status: str = "active", paid: int = 2, family: int = 1, band: str = "150_to_500",
           observations: str = "") -> VisitReport:
    return VisitReport.checked(on, status, paid, family, band, observations, "")


def opened(months=DEFAULT_VISIT_MONTHS, operator: str | None = "op-1") -> FollowUp:
    followup = FollowUp(project_id=uuid.uuid4())
    if operator:
        followup.note_local_operator(operator, "ss-1")
    assert followup.open(first_tranche_at=PAID.isoformat(), paid_on=PAID.date(), visit_months=months,
                         rule_version="2026-1")
    return followup


def launched(**kwargs) -> FollowUp:
    followup = opened(**kwargs)
    followup.launch_business(LAUNCH, "sole trader", "SN-THS-2026-B-1234", 1, 100_000, today=date(2026, 2, 2))
    return followup


def names(followup: FollowUp) -> list[str]:
    return [type(e).__name__ for e in followup.collect_events()]


# --- the plan --------------------------------------------------------------------------------


def test_months_are_added_to_dates_keeping_the_day_or_the_months_last():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)
    assert add_months(date(2026, 2, 1), 12) == date(2027, 2, 1)


def test_the_first_tranche_opens_the_plan_due_from_the_payment_then_from_the_launch():
    followup = opened()
    assert followup.stage == Stage.opened
    assert [v["due_on"] for v in followup.visits_planned] == [
        "2026-02-10", "2026-04-10", "2026-07-10", "2026-10-10", "2027-01-10"]
    assert not followup.open(first_tranche_at=PAID.isoformat(), paid_on=PAID.date(), visit_months=[1],
                             rule_version="x")  # a redelivery or a later tranche opens nothing
    followup.launch_business(LAUNCH, "GIE", "REG-1", 2, None, today=date(2026, 3, 1))
    assert [v["due_on"] for v in followup.visits_planned] == [
        "2026-03-01", "2026-05-01", "2026-08-01", "2026-11-01", "2027-02-01"]
    assert names(followup)[-2:] == ["FollowUpOpened", "BusinessLaunched"]


def test_the_rule_version_gives_the_months_else_the_historical_plan():
    rules = VisitRules()
    assert rules.note("2026-1", {"SN": {"visit_months": [2, 4, 12]}, "ML": {"in_programme": False}})
    assert not rules.note("2026-1", {"SN": {"visit_months": [1]}})  # a version never changes
    assert rules.visit_months("2026-1", "SN") == ([2, 4, 12], "2026-1")
    assert rules.visit_months("2026-1", "ML") == (list(DEFAULT_VISIT_MONTHS), "default")
    assert rules.visit_months("unknown", "SN") == (list(DEFAULT_VISIT_MONTHS), "default")
    assert rules.visit_months(None, None) == (list(DEFAULT_VISIT_MONTHS), "default")


def test_launch_rules():
    with pytest.raises(RuleViolated) as no_plan:
        FollowUp(project_id=uuid.uuid4()).launch_business(LAUNCH, "GIE", "R", 1, None, today=LAUNCH)
    assert no_plan.value.rule == "follow_up_is_open"
    followup = opened()
    with pytest.raises(InvalidValue):
        followup.launch_business(date(2026, 5, 1), "GIE", "R", 1, None, today=date(2026, 4, 30))  # future
    with pytest.raises(InvalidValue):
        followup.launch_business(LAUNCH, " ", "R", 1, None, today=LAUNCH)
    with pytest.raises(InvalidValue):
        followup.launch_business(LAUNCH, "GIE", "R", -1, None, today=LAUNCH)
    followup.launch_business(LAUNCH, "GIE", "R", 1, None, today=LAUNCH)
    with pytest.raises(RuleViolated) as twice:
        followup.launch_business(LAUNCH, "GIE", "R", 1, None, today=LAUNCH)
    assert twice.value.rule == "launch_once"


# --- visits ------------------------------------------------------------------------------------


def test_visits_fulfil_the_plan_in_order_on_time_or_late():
    followup = launched()
    assert followup.log_visit("v1", report(date(2026, 3, 1)), today=date(2026, 3, 2)) == "logged"
    assert followup.log_visit("v2", report(date(2026, 5, 20)), today=date(2026, 5, 20)) == "logged"
    first, second = followup.visits.values()
    assert (first["visit_number"], first["on_time"]) == (1, True)
    assert (second["visit_number"], second["due_on"], second["on_time"]) == (2, "2026-05-01", False)
    assert followup.jobs_now == 3


def test_visit_rules():
    with pytest.raises(RuleViolated) as before_launch:
        opened().log_visit("v1", report(date(2026, 3, 1)), today=date(2026, 3, 1))
    assert before_launch.value.rule == "visits_after_launch"
    followup = launched()
    with pytest.raises(InvalidValue):
        followup.log_visit("v1", report(date(2026, 1, 15)), today=date(2026, 3, 1))  # before the launch
    with pytest.raises(InvalidValue):
        followup.log_visit("v1", report(date(2026, 3, 2)), today=date(2026, 3, 1))  # in the future
    with pytest.raises(InvalidValue):
        VisitReport.checked(date(2026, 3, 1), "thriving", 1, 1, "none")
    with pytest.raises(InvalidValue):
        VisitReport.checked(date(2026, 3, 1), "active", -1, 1, "none")
    with pytest.raises(InvalidValue):
        VisitReport.checked(date(2026, 3, 1), "active", 1, 1, "millions")
    assert followup.visits == {}


def test_an_offline_visit_sent_twice_is_recorded_once():
    followup = launched()
    followup.collect_events()
    assert followup.log_visit("dev-7:42", report(date(2026, 3, 1)), today=date(2026, 3, 9)) == "logged"
    assert followup.log_visit("dev-7:42", report(date(2026, 3, 1)), today=date(2026, 3, 10)) == "duplicate"
    assert names(followup) == ["FollowUpVisitLogged"]


def test_two_versions_of_a_visit_make_a_conflict_until_an_officer_resolves_it():
    followup = launched()
    followup.log_visit("v1", report(date(2026, 3, 1), paid=2), today=date(2026, 3, 1))
    followup.collect_events()
    assert followup.log_visit("v1", report(date(2026, 3, 1), paid=4), today=date(2026, 3, 2)) == "conflict"
    assert followup.log_visit("v1", report(date(2026, 3, 1), paid=4), today=date(2026, 3, 2)) == "duplicate"
    assert followup.visits["v1"]["jobs_paid"] == 2  # never silently overwritten
    assert followup.conflicts["v1"][0]["jobs_paid"] == 4
    with pytest.raises(RuleViolated):
        followup.resolve_conflict("v9", "received")
    followup.resolve_conflict("v1", "received")
    assert followup.visits["v1"]["jobs_paid"] == 4 and followup.conflicts == {}
    assert names(followup) == ["VisitConflictRecorded", "VisitConflictResolved"]
    with pytest.raises(RuleViolated) as again:
        followup.resolve_conflict("v1", "recorded")
    assert again.value.rule == "conflict_exists"


# --- overdue visits, with a controllable clock ----------------------------------------------------


def test_a_visit_is_overdue_the_day_after_its_due_date_and_flagged_once():
    followup = launched()  # first visit due 2026-03-01
    followup.collect_events()
    assert followup.flag_overdue(date(2026, 3, 1)) == 0  # due today: not late yet
    assert followup.flag_overdue(date(2026, 3, 2)) == 1
    assert followup.flag_overdue(date(2026, 3, 2)) == 0
    assert followup.flag_overdue(date(2026, 4, 30)) == 0
    assert followup.flag_overdue(date(2026, 5, 2)) == 1  # the second one
    events = followup.collect_events()
    assert [(e.visit_number, e.due_on) for e in events] == [(1, "2026-03-01"), (2, "2026-05-01")]
    # A late visit fulfils the first planned visit: nothing more to flag for it.
    followup.log_visit("v1", report(date(2026, 5, 3)), today=date(2026, 5, 3))
    assert followup.visits["v1"]["visit_number"] == 1 and followup.visits["v1"]["on_time"] is False
    assert followup.flag_overdue(date(2026, 5, 3)) == 0


def test_the_flags_come_back_with_the_aggregate_rebuilt_from_its_events():
    followup = launched()
    followup.flag_overdue(date(2026, 3, 2))
    events = followup.collect_events()
    rebuilt = None
    for e in events:
        rebuilt = e.mutate(rebuilt)
    assert rebuilt.flag_overdue(date(2026, 3, 5)) == 0  # a restarted scheduler flags nothing twice
    assert rebuilt.next_due_on() == "2026-05-01"


def test_a_launch_dates_the_plan_again_and_visits_fall_due_anew():
    followup = opened()  # visit 1 due 2026-02-10, from the payment
    assert followup.flag_overdue(date(2026, 2, 11)) == 1
    followup.launch_business(date(2026, 2, 12), "GIE", "R", 1, None, today=date(2026, 2, 12))
    assert followup.flag_overdue(date(2026, 2, 13)) == 0
    assert followup.flag_overdue(date(2026, 3, 13)) == 1  # due 2026-03-12 now


def test_nothing_is_overdue_before_the_plan_nor_after_completion():
    assert FollowUp(project_id=uuid.uuid4()).flag_overdue(date(2030, 1, 1)) == 0
    followup = launched(months=[1])
    followup.log_visit("v1", report(date(2026, 3, 1)), today=date(2026, 3, 1))
    assert followup.stage == Stage.completed
    assert followup.flag_overdue(date(2030, 1, 1)) == 0


# --- alerts ----------------------------------------------------------------------------------------


def test_a_business_in_difficulty_raises_one_alert_resolved_by_a_later_active_visit():
    followup = launched()
    followup.collect_events()
    followup.log_visit("v1", report(date(2026, 3, 1), "in_difficulty"), today=date(2026, 3, 1))
    raised = followup.collect_events()[-1]
    assert type(raised).__name__ == "AlertRaised"
    assert raised.reason == "business_in_difficulty" and raised.visit_id == "v1"
    assert raised.alert_id == alert_id_for(followup.project_id, "v1") and raised.project_id == followup.project_id
    followup.log_visit("v2", report(date(2026, 5, 1), "closed"), today=date(2026, 5, 1))
    assert names(followup) == ["FollowUpVisitLogged"]  # one open alert at a time
    followup.log_visit("v3", report(date(2026, 8, 1), "active"), today=date(2026, 8, 1))
    resolved = followup.collect_events()[-1]
    assert type(resolved).__name__ == "AlertResolved" and resolved.alert_id == raised.alert_id
    assert followup.open_alert is None and followup.alerts[0]["resolved_by_visit_id"] == "v3"


def test_a_closed_business_raises_an_alert_naming_it():
    followup = launched()
    followup.log_visit("v1", report(date(2026, 3, 1), "closed"), today=date(2026, 3, 1))
    assert followup.open_alert["reason"] == "business_closed"


def test_a_resolution_keeping_the_other_version_of_the_latest_visit_applies_the_alert_rule():
    followup = launched()
    followup.log_visit("v1", report(date(2026, 3, 1), "active"), today=date(2026, 3, 1))
    followup.log_visit("v1", report(date(2026, 3, 1), "in_difficulty"), today=date(2026, 3, 2))
    assert followup.open_alert is None
    followup.resolve_conflict("v1", "received")
    assert followup.open_alert is not None and followup.open_alert["visit_id"] == "v1"


# --- the end ---------------------------------------------------------------------------------------


def test_the_last_planned_visit_completes_the_follow_up_with_outcome_and_jobs():
    followup = launched(months=[1, 3])
    followup.log_visit("v1", report(date(2026, 3, 1), paid=1, family=1), today=date(2026, 3, 1))
    followup.collect_events()
    followup.log_visit("v2", report(date(2026, 5, 1), paid=3, family=1), today=date(2026, 5, 1))
    completed = followup.collect_events()[-1]
    assert type(completed).__name__ == "FollowUpCompleted"
    assert (completed.outcome, completed.jobs_created, completed.visits_done, completed.visits_planned) == (
        "business_active", 4, 2, 2)
    with pytest.raises(RuleViolated) as after:
        followup.log_visit("v3", report(date(2026, 6, 1)), today=date(2026, 6, 1))
    assert after.value.rule == "follow_up_is_open"


def test_an_officer_ends_a_follow_up_early():
    followup = launched()
    with pytest.raises(InvalidValue):
        followup.complete("vanished", date(2026, 4, 1), today=date(2026, 4, 1))
    followup.complete("re_migrated", date(2026, 4, 1), today=date(2026, 4, 1))
    assert followup.outcome["outcome"] == "re_migrated" and followup.stage == Stage.completed
    with pytest.raises(RuleViolated):
        followup.complete("abandoned", date(2026, 4, 2), today=date(2026, 4, 2))


def test_the_survey_is_at_month_24_and_once():
    followup = launched()
    with pytest.raises(RuleViolated) as early:
        followup.record_survey(report(date(2027, 6, 1)), today=date(2027, 6, 1))
    assert early.value.rule == "survey_at_month_24"
    followup.record_survey(report(date(2028, 2, 3)), today=date(2028, 2, 3))
    assert followup.survey["business_status"] == "active"
    with pytest.raises(RuleViolated):
        followup.record_survey(report(date(2028, 2, 4)), today=date(2028, 2, 4))


# --- indicators ------------------------------------------------------------------------------------


def _history(followup: FollowUp, events) -> list[tuple[str, dict]]:
    from services.followup.projections import event_data

    return [(type(e).__name__, event_data(e)) for e in events]


def test_indicators_fold_the_events_of_each_dossier():
    first = FollowUp(project_id=uuid.uuid4())
    first.note_submission("SN", "2025-03-01T10:00:00Z", 120_000, 3)
    first.note_committee("2025-09-01T10:00:00Z", 150_000, 3)
    first.open(first_tranche_at="2025-10-01T10:00:00+00:00", paid_on=date(2025, 10, 1), visit_months=[1, 6, 12],
               rule_version="r")
    first.launch_business(date(2025, 11, 1), "GIE", "R", 1, 140_000, today=date(2025, 11, 1))
    first.log_visit("a", report(date(2025, 12, 1)), today=date(2025, 12, 1))
    first.log_visit("b", report(date(2026, 5, 20), "in_difficulty"), today=date(2026, 5, 20))
    first.log_visit("c", report(date(2026, 11, 1), paid=3, family=1), today=date(2026, 11, 1))
    first.record_survey(report(date(2027, 11, 2), "closed"), today=date(2027, 11, 2))
    second = launched()  # due 2026-03-01, 05-01, 08-01, 11-01, 2027-02-01; nothing visited
    never = FollowUp(project_id=uuid.uuid4())  # known, never financed: not followed
    never.note_submission("SN", "2025-03-01T10:00:00Z", 1, 1)
    dossiers = [indicators.fold(_history(f, f.collect_events())) for f in (first, second, never)]
    result = indicators.compute(dossiers, date(2027, 12, 1))
    assert result["active_at_months"]["24"] == {"observed": 1, "active": 0, "share": 0.0}
    result = indicators.compute(dossiers, date(2026, 12, 1))
    assert result["dossiers_followed"] == 2 and result["follow_ups_completed"] == 1
    assert result["visits"] == {"due": 7, "done": 3, "done_on_time": 2, "overdue": 4,
                                "done_share_of_due": 0.429, "on_time_share_of_done": 0.667}
    assert result["active_at_months"]["6"] == {"observed": 1, "active": 0, "share": 0.0}
    assert result["active_at_months"]["12"] == {"observed": 1, "active": 1, "share": 1.0}
    assert result["jobs_created"] == {"follow_ups_completed": 1, "total": 4, "per_project": 4}
    assert result["own_contribution"] == {"planned_cents": 150_000, "dossiers_planned": 1,
                                          "put_in_cents": 240_000, "dossiers_put_in": 2}
    assert result["days_submission_to_committee"] == {"dossiers": 1, "mean": 184.0, "median": 184.0}
    assert result["days_committee_to_first_tranche"] == {"dossiers": 1, "mean": 30.0, "median": 30.0}
    assert result["alerts_open"] == 0  # raised at b, resolved at c
