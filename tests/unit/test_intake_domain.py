"""Intake's rules, without I/O."""

from __future__ import annotations

import uuid

import pytest

from services.intake.domain import (
    AdoptedRules,
    ClosureReason,
    Conclusion,
    ConsentPurpose,
    DuplicateKind,
    FinancingDecision,
    ForgetReason,
    Person,
    Project,
    RuleSet,
    Status,
)
from shared.domain import InvalidValue, RuleViolated

RULES = RuleSet.from_dict({"version": "test-1", "countries": ["SN", "ML"], "default_ceiling_cents": 700_000,
                           "ceilings_cents": {"ML": 1_000_000}})


def dossier(**overrides) -> Project:
    facts = dict(reference="PAS-T", person_id=uuid.uuid4(), promoter_ciphertext="c", country="SN",
                 french_region="FR-IDF", sector="trade", title="Boutique", description="",
                 requested_amount_cents=500_000, own_contribution_cents=100_000, planned_jobs=2)
    facts.update(overrides)
    return Project(**facts)


def assigned(**overrides) -> Project:
    project = dossier(**overrides)
    project.screen(RULES)
    project.record_partners("support-1", "operator-1")
    return project


def at_feasibility() -> Project:
    project = assigned()
    project.record_business_plan([{"label": "stock", "amount_cents": 400_000}], 100_000, 2)
    project.request_feasibility_study()
    return project


def names(project: Project) -> list[str]:
    return [type(e).__name__ for e in project.collect_events()]


def test_an_eligible_dossier_is_screened_with_the_rule_version():
    project = dossier()
    project.screen(RULES)
    assert project.status == Status.eligible
    assert project.eligibility == {"eligible": True, "reasons": [], "rule_version": "test-1"}
    assert names(project) == ["ProjectSubmitted", "EligibilityAssessed"]


@pytest.mark.parametrize("overrides, reason", [
    ({"country": "FR"}, "country_not_in_programme"),
    ({"requested_amount_cents": 700_001}, "over_ceiling"),
    ({"requested_amount_cents": 0}, "nothing_requested"),
    ({"planned_jobs": 0}, "too_few_planned_jobs"),
])
def test_ineligible_dossiers_say_why(overrides, reason):
    project = dossier(**overrides)
    project.screen(RULES)
    assert project.status == Status.ineligible
    assert any(r.startswith(reason) for r in project.eligibility["reasons"])


def test_ceilings_are_per_country():
    project = dossier(country="ML", requested_amount_cents=900_000)
    project.screen(RULES)
    assert project.status == Status.eligible


def test_a_possible_duplicate_is_flagged_and_does_not_make_the_dossier_ineligible():
    project = dossier()
    other = uuid.uuid4()
    project.flag_possible_duplicate(other, ["first-dossier"], [DuplicateKind.name, DuplicateKind.birth_date])
    project.screen(RULES)
    assert project.status == Status.eligible, "only a confirmed duplicate counts for one person, one aid"
    assert project.possible_duplicates == ["first-dossier"]
    assert project.duplicate_reviews[str(other)] == {"person_id": str(other), "project_ids": ["first-dossier"],
                                                     "matched": ["birth_date", "name"], "status": "flagged"}
    assert names(project) == ["ProjectSubmitted", "PossibleDuplicateFlagged", "EligibilityAssessed"]


def flagged(other: uuid.UUID) -> Project:
    project = dossier()
    project.flag_possible_duplicate(other, ["first-dossier"], [DuplicateKind.phone])
    project.screen(RULES)
    return project


def test_confirming_a_duplicate_that_holds_an_aid_closes_the_later_dossier():
    other = uuid.uuid4()
    project = flagged(other)
    project.confirm_duplicate(other, aid_held=["first-dossier"])
    assert project.status == Status.closed and project.closure_reason == ClosureReason.duplicate_aid
    assert project.duplicate_reviews[str(other)]["status"] == "confirmed"
    assert names(project)[-2:] == ["DuplicateConfirmed", "ProjectClosed"]
    with pytest.raises(RuleViolated) as raised:
        project.confirm_duplicate(other, aid_held=[])
    assert raised.value.rule == "duplicate_review_in_order"


def test_confirming_a_duplicate_without_another_aid_leaves_the_dossier_open():
    other = uuid.uuid4()
    project = flagged(other)
    project.confirm_duplicate(other, aid_held=[])
    assert project.status == Status.eligible


def test_a_confirmation_can_be_undone_then_settled_again_and_a_dismissal_changes_nothing_else():
    other = uuid.uuid4()
    project = flagged(other)
    project.confirm_duplicate(other, aid_held=[])
    project.undo_duplicate(other)
    assert project.duplicate_reviews[str(other)]["status"] == "undone"
    project.dismiss_duplicate(other)
    assert project.duplicate_reviews[str(other)]["status"] == "dismissed" and project.status == Status.eligible
    with pytest.raises(RuleViolated) as raised:
        project.undo_duplicate(other)
    assert raised.value.rule == "duplicate_review_in_order"


def test_only_a_flagged_duplicate_is_settled():
    project = flagged(uuid.uuid4())
    with pytest.raises(RuleViolated) as raised:
        project.confirm_duplicate(uuid.uuid4(), aid_held=[])
    assert raised.value.rule == "duplicate_was_flagged"


def test_merged_persons_can_be_unmerged():
    one, two = uuid.uuid4(), uuid.uuid4()
    person = Person(one)
    person.merge_with(two)
    person.merge_with(two)
    assert person.same_as == [str(two)]
    person.unmerge(two)
    assert person.same_as == []
    assert [type(e).__name__ for e in person.collect_events()] == ["PersonRegistered", "PersonsMerged",
                                                                    "PersonsUnmerged"]


def test_a_flag_recorded_before_persons_had_random_ids_still_reads():
    project = dossier()
    project._possible_duplicate_flagged(other_project_ids=["old-dossier"])  # as the old event held it
    copy = None
    for e in project.collect_events():
        copy = e.mutate(copy)
    assert copy.possible_duplicates == ["old-dossier"] and copy.duplicate_reviews == {}


def test_screening_happens_once():
    project = dossier()
    project.screen(RULES)
    with pytest.raises(RuleViolated) as raised:
        project.screen(RULES)
    assert raised.value.rule == "screen_once"


def test_partners_are_recorded_only_on_an_eligible_dossier():
    project = dossier(country="FR")
    project.screen(RULES)
    assert project.record_partners("s", "o") is False
    project = assigned()
    assert project.status == Status.assigned
    assert project.record_partners("support-1", "operator-1") is False, "the same assignment twice is a no-op"


def test_preparation_needs_an_assignment():
    project = dossier()
    project.screen(RULES)
    with pytest.raises(RuleViolated) as raised:
        project.complete_skills_review("good")
    assert raised.value.rule == "preparation_after_assignment"


def test_preparation_then_feasibility_then_committee():
    project = assigned()
    project.record_consent(["funding", "follow_up"], ["support-1"])
    project.complete_skills_review("solid retail experience")
    project.record_training("business management", 20, "2026-10-01")
    project.record_business_plan([{"label": "stock", "amount_cents": 300_000},
                                  {"label": "rent", "amount_cents": 100_000}], 120_000, 3)
    assert project.status == Status.preparing
    assert project.business_plan["total_cents"] == 400_000
    project.request_feasibility_study()
    assert project.status == Status.feasibility
    project.complete_feasibility_study(Conclusion.feasible, "market exists")
    project.send_to_committee()
    assert project.status == Status.at_committee


def test_feasibility_study_needs_a_business_plan():
    project = assigned()
    project.complete_skills_review("ok")
    with pytest.raises(RuleViolated) as raised:
        project.request_feasibility_study()
    assert raised.value.rule == "feasibility_needs_business_plan"


def test_a_business_plan_has_budget_lines_and_no_negative_amounts():
    project = assigned()
    with pytest.raises(RuleViolated):
        project.record_business_plan([], 0, 1)
    with pytest.raises(InvalidValue):
        project.record_business_plan([{"label": "x", "amount_cents": 1}], -1, 1)


def test_committee_needs_a_feasible_study_and_consent():
    project = at_feasibility()
    with pytest.raises(RuleViolated) as raised:
        project.send_to_committee()
    assert raised.value.rule == "committee_after_study"
    project.complete_feasibility_study(Conclusion.feasible, "")
    with pytest.raises(RuleViolated) as raised:
        project.send_to_committee()
    assert raised.value.rule == "committee_needs_consent"

    not_feasible = at_feasibility()
    not_feasible.record_consent(["funding"], [])
    not_feasible.complete_feasibility_study(Conclusion.not_feasible, "no market")
    with pytest.raises(RuleViolated) as raised:
        not_feasible.send_to_committee()
    assert raised.value.rule == "committee_needs_feasible_study"
    with pytest.raises(RuleViolated) as raised:
        not_feasible.complete_feasibility_study(Conclusion.feasible, "")
    assert raised.value.rule == "study_concluded_once"


def test_consent_can_be_withdrawn():
    project = assigned()
    project.record_consent(["funding", "follow_up"], ["support-1"])
    project.withdraw_consent(["funding"], [])
    assert project.consent == {"purposes": ["follow_up"], "partners": ["support-1"]}


def test_withdrawn_and_closed_dossiers_are_final():
    project = assigned()
    project.withdraw("moved abroad")
    assert project.status == Status.withdrawn
    for verb, kwargs in [("withdraw", {"reason": "again"}), ("close", {"reason": ClosureReason.abandoned}),
                         ("record_consent", {"purposes": ["funding"], "partners": []})]:
        with pytest.raises(RuleViolated) as raised:
            getattr(project, verb)(**kwargs)
        assert raised.value.rule == "dossier_is_open"


def test_only_a_financed_dossier_closes_with_success():
    project = assigned()
    with pytest.raises(RuleViolated) as raised:
        project.close(ClosureReason.success)
    assert raised.value.rule == "success_needs_financing"
    project.close(ClosureReason.abandoned)
    assert project.status == Status.closed


def test_replaying_the_events_rebuilds_the_same_dossier():
    project = at_feasibility()
    events = project.collect_events()
    copy = None
    for e in events:
        copy = e.mutate(copy)
    assert copy.status == project.status and copy.business_plan == project.business_plan


def test_a_person_is_forgotten_once_for_a_reason_of_the_closed_list():
    person = Person(uuid.uuid4())
    person.open_dossier(uuid.uuid4())
    with pytest.raises(InvalidValue):
        person.forget("because")
    person.forget(ForgetReason.consent_withdrawn, note_ciphertext="c2VhbGVk")
    assert person.forgotten and person.forgotten_reason == "consent_withdrawn"
    with pytest.raises(RuleViolated):
        person.forget(ForgetReason.entered_in_error)


def test_consent_purposes_are_a_closed_list_and_old_words_still_read():
    project = assigned()
    with pytest.raises(InvalidValue):
        project.record_consent(["marketing"], [])
    project.record_consent([ConsentPurpose.funding, "follow_up"], [])
    assert project.consent["purposes"] == ["follow_up", "funding"]
    project._consent_recorded(purposes=["suivi"], partners=[])  # a word stored before the list was closed
    copy = None
    for e in project.collect_events():
        copy = e.mutate(copy)
    assert copy.consent["purposes"] == ["follow_up", "funding", "suivi"]


# --- what funding decided ----------------------------------------------------------------------


def at_committee() -> Project:
    project = at_feasibility()
    project.complete_feasibility_study(Conclusion.feasible, "a market")
    project.record_consent(["funding"], [])
    project.send_to_committee()
    project.collect_events()
    return project


def test_the_feasibility_grant_outcome_is_recorded_once():
    project = at_feasibility()
    project.collect_events()
    assert project.record_feasibility_grant("rejected", None, None, ["envelope_open: none"], 3) is True
    assert project.record_feasibility_grant("awarded", 140_000, "operator:op-1", [], 5) is True
    # Redelivered, in their order: neither the rejection nor the award is recorded again.
    assert project.record_feasibility_grant("rejected", None, None, ["envelope_open: none"], 3) is False
    assert project.record_feasibility_grant("awarded", 140_000, "operator:op-1", [], 5) is False
    assert names(project) == ["FeasibilityGrantRecorded", "FeasibilityGrantRecorded"]
    assert project.feasibility_grant == {"outcome": "awarded", "amount_cents": 140_000, "payee": "operator:op-1",
                                         "reasons": []}


@pytest.mark.parametrize("decision, status", [
    (FinancingDecision.approved, Status.financed), (FinancingDecision.deferred, Status.deferred),
    (FinancingDecision.rejected, Status.rejected),
])
def test_the_financing_decision_moves_the_dossier(decision, status):
    project = at_committee()
    assert project.record_financing_decision(decision, 600_000, "2026.1", 7) is True
    assert project.status == status and project.financing["decision"] == decision.value


def test_a_deferred_dossier_can_be_financed_later_and_a_decision_is_not_recorded_twice():
    project = at_committee()
    project.record_financing_decision(FinancingDecision.deferred, None, "2026.1", 7)
    assert project.record_financing_decision(FinancingDecision.deferred, None, "2026.1", 7) is False
    project.record_financing_decision(FinancingDecision.approved, 500_000, "2026.1", 9)
    assert project.status == Status.financed
    assert project.record_financing_decision(FinancingDecision.approved, 500_000, "2026.1", 9) is False
    project.close(ClosureReason.success)


def test_a_decision_on_a_withdrawn_dossier_changes_nothing():
    project = at_committee()
    project.withdraw("left the programme")
    assert project.record_financing_decision(FinancingDecision.approved, 1, "v", 9) is False
    assert project.record_feasibility_grant("awarded", 1, "promoter", [], 3) is False
    assert project.status == Status.withdrawn


def test_published_programme_rules_replace_the_default_ones():
    adopted = AdoptedRules()
    assert adopted.in_force() is None
    countries = {"SN": {"in_programme": True, "startup_ceiling_cents": 1_000_000},
                 "HT": {"in_programme": False, "startup_ceiling_cents": 700_000}}
    assert adopted.adopt("2027.1", countries, 2) is True
    assert adopted.adopt("2027.1", countries, 2) is False
    rules = adopted.in_force()
    assert rules.version == "2027.1" and rules.countries == frozenset({"SN"})
    assert rules.ceiling("SN") == 1_000_000 and rules.min_planned_jobs == 2
    project = dossier(requested_amount_cents=900_000, planned_jobs=1)
    project.screen(rules)
    assert project.eligibility == {"eligible": False, "rule_version": "2027.1",
                                   "reasons": ["too_few_planned_jobs: 1 < 2"]}


def test_a_dossier_at_committee_or_financed_goes_into_follow_up_once():
    project = at_feasibility()
    assert not project.record_followup()  # not sent to the committee yet: nothing to record
    project.record_consent(["funding"], [])
    project.complete_feasibility_study(Conclusion.feasible, "market exists")
    project.send_to_committee()
    project.collect_events()
    assert project.record_followup()
    assert project.status == Status.in_followup
    assert names(project) == ["FollowUpRecorded"]
    assert not project.record_followup()  # a redelivered FollowUpOpened
    project.close(ClosureReason.success)
    assert not project.record_followup()
