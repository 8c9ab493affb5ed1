"""Funding's rules, without I/O: every rule a decision on public money answers to."""

from __future__ import annotations

import copy
import uuid

import pytest

from services.funding.application import example_rules
from services.funding.domain import (
    CountryRules,
    Dossier,
    Envelope,
    FinancingStatus,
    Person,
    Purpose,
    ReturnAid,
    Rulebook,
    check_rules,
)
from shared.domain import InvalidValue, RuleViolated

SN = {"in_programme": True, "startup_ceiling_cents": 700_000, "feasibility_grant_cents": 140_000,
      "operator_fees_cents": 120_000, "followup_months": 12, "visit_months": [1, 3, 6, 9, 12],
      "tranche_percentages": [50, 30, 20]}
RETURN_AID = {"base_cents": {"regular": 65_000, "irregular": 30_000}, "per_adult_cents": 50_000,
              "per_child_cents": 25_000, "max_cents": 200_000}


def rules(version="test-1", **countries):
    countries = countries or {"SN": SN, "ML": {**SN, "startup_ceiling_cents": 1_000_000},
                              "HT": {**SN, "in_programme": False}}
    return check_rules(version, countries, RETURN_AID)


def envelope(amount=10_000_000, country="SN", purpose=Purpose.business_creation) -> Envelope:
    return Envelope.open(purpose, 2026, country, amount)


def rule_of(call) -> str:
    with pytest.raises(RuleViolated) as refused:
        call()
    return refused.value.rule


def names(*aggregates) -> list[str]:
    return [type(e).__name__ for a in aggregates for e in a.collect_events()]


def dossier(country="SN") -> Dossier:
    return Dossier(project_id=uuid.uuid4(), country=country, eligibility_rule_version="default")


def proposed(amount=600_000, env=None, country="SN") -> tuple[Dossier, Envelope]:
    env = env or envelope(country=country)
    d = dossier(country)
    d.request_financing(650_000, dossier_version=9)
    d.propose(rules(), env, 2026, amount, "a sound plan", proposed_by="user:olga")
    return d, env


def agreed(amount=600_000) -> tuple[Dossier, Envelope]:
    d, env = proposed(amount)
    d.decide("approve", rules(), env, 2026, "approved by the committee", "user:anna", "1.0+abc")
    d.sign_agreement(rules(), env, "2026-05-01", "operator-1")
    return d, env


# --- rules -----------------------------------------------------------------------------------


def test_the_example_rules_are_valid_and_follow_the_programme():
    published = check_rules(**{k: v for k, v in example_rules().items() if k != "comment"})
    assert published.for_country("SN").startup_ceiling_cents == 700_000
    assert published.for_country("ML").startup_ceiling_cents == 1_000_000
    assert all(130_000 <= r.feasibility_grant_cents <= 150_000 for r in published.countries.values())


def test_a_published_version_never_changes():
    book = Rulebook()
    book.publish("v1", {"SN": SN}, RETURN_AID)
    assert rule_of(lambda: book.publish("v1", {"SN": {**SN, "startup_ceiling_cents": 1}}, RETURN_AID)) \
        == "rule_version_immutable"
    book.publish("v2", {"SN": {**SN, "startup_ceiling_cents": 1_000_000}}, RETURN_AID)
    assert book.in_force().version == "v2"
    assert book.rules("v1").for_country("SN").startup_ceiling_cents == 700_000
    assert names(book) == ["RulebookOpened", "ProgrammeRulesPublished", "ProgrammeRulesPublished"]


def test_no_rules_no_decision():
    assert rule_of(lambda: Rulebook().in_force()) == "rules_published"


@pytest.mark.parametrize("change, field", [
    ({"tranche_percentages": [50, 30]}, "tranche_percentages"),
    ({"tranche_percentages": [120, -20]}, "tranche_percentages"),
    ({"visit_months": [3, 1]}, "visit_months"),
    ({"visit_months": [13]}, "visit_months"),
    ({"startup_ceiling_cents": -1}, "startup_ceiling_cents"),
    ({"in_programme": "yes"}, "in_programme"),
])
def test_wrong_country_rules_are_refused_naming_the_field(change, field):
    with pytest.raises(InvalidValue) as wrong:
        check_rules("v", {"SN": {**SN, **change}}, RETURN_AID)
    assert field in wrong.value.field


def test_rules_need_known_countries_and_complete_fields():
    with pytest.raises(InvalidValue):
        check_rules("v", {"XX1": SN}, RETURN_AID)
    with pytest.raises(InvalidValue):
        check_rules("v", {"SN": {k: v for k, v in SN.items() if k != "feasibility_grant_cents"}}, RETURN_AID)
    with pytest.raises(InvalidValue):
        check_rules("v", {"SN": SN}, {**RETURN_AID, "base_cents": {}})


def test_a_country_out_of_the_programme_gets_nothing():
    assert rule_of(lambda: rules().for_country("HT")) == "country_in_programme"
    assert rule_of(lambda: rules().for_country("FR")) == "country_in_programme"


def test_tranches_split_the_grant_and_the_last_takes_the_rounding():
    schedule = CountryRules.checked("SN", {**SN, "tranche_percentages": [33, 33, 34]})
    assert schedule.tranches(100_001) == [33_000, 33_000, 34_001]
    assert sum(schedule.tranches(599_999)) == 599_999


# --- envelopes ------------------------------------------------------------------------------------


def test_an_envelope_reserves_disburses_and_never_overcommits():
    env = envelope(1_000_000)
    env.reserve("p1", 600_000)
    assert (env.reserved_cents, env.available_cents) == (600_000, 400_000)
    assert rule_of(lambda: env.reserve("p2", 400_001)) == "envelope_not_overcommitted"
    env.pay("p1", 300_000, from_reserved=True)
    assert (env.reserved_cents, env.disbursed_cents, env.available_cents) == (300_000, 300_000, 400_000)
    env.pay("p3", 400_000, from_reserved=False)
    assert env.available_cents == 0
    assert rule_of(lambda: env.pay("p4", 1, from_reserved=False)) == "envelope_not_overcommitted"
    assert rule_of(lambda: env.pay("p1", 300_001, from_reserved=True)) == "envelope_not_overcommitted"


def test_an_envelope_is_never_adjusted_below_its_commitments():
    env = envelope(1_000_000)
    env.reserve("p1", 700_000)
    assert rule_of(lambda: env.adjust(699_999, "cut")) == "envelope_covers_commitments"
    env.adjust(700_000, "cut to what is committed")
    assert env.available_cents == 0
    env.adjust(2_000_000, "supplementary budget")
    assert env.allocated_cents == 2_000_000


@pytest.mark.parametrize("kwargs", [
    {"purpose": "holidays"}, {"year": 1999}, {"country": "France"}, {"amount_cents": 0}, {"amount_cents": 1.5},
])
def test_an_envelope_needs_sound_values(kwargs):
    values = {"purpose": "business_creation", "year": 2026, "country": "SN", "amount_cents": 100, **kwargs}
    with pytest.raises(InvalidValue):
        Envelope.open(**values)


def test_envelope_ids_name_purpose_year_and_scope():
    assert Envelope.open("business_creation", 2026, None, 1).id == Envelope.create_id("business_creation", 2026,
                                                                                          "programme")
    assert Envelope.open("return_aid", 2026, "SN", 1).id != Envelope.open("business_creation", 2026, "SN", 1).id


# --- feasibility grants -------------------------------------------------------------------------------


def test_a_feasibility_grant_comes_from_the_rules_and_is_paid_at_once():
    d, env = dossier(), envelope(1_000_000)
    d.award_feasibility_grant(rules(), env, 2026, 140_000, "operator:op-1", "rules in force")
    assert d.feasibility_grant["outcome"] == "awarded" and d.feasibility_grant["rule_version"] == "test-1"
    assert env.disbursed_cents == 140_000
    assert rule_of(lambda: d.award_feasibility_grant(rules(), env, 2026, 140_000, "promoter", "again")) \
        == "feasibility_grant_once"


def test_a_feasibility_grant_above_the_rules_or_outside_the_envelope_is_refused():
    d = dossier()
    assert rule_of(lambda: d.award_feasibility_grant(rules(), envelope(), 2026, 150_000, "promoter", "x")) \
        == "feasibility_grant_within_rules"
    assert rule_of(lambda: d.award_feasibility_grant(rules(), envelope(country="ML"), 2026, 140_000, "promoter", "x")) \
        == "envelope_covers_dossier"
    assert rule_of(lambda: d.award_feasibility_grant(rules(), envelope(100_000), 2026, 140_000, "promoter", "x")) \
        == "envelope_not_overcommitted"
    assert rule_of(lambda: dossier("HT").award_feasibility_grant(rules(), envelope(country=None), 2026, 1, "p", "x")) \
        == "country_in_programme"
    assert rule_of(lambda: d.award_feasibility_grant(rules(), envelope(), 2027, 140_000, "promoter", "x")) \
        == "envelope_of_the_year"


def test_a_rejected_feasibility_grant_gives_reasons_and_can_be_awarded_later():
    d = dossier()
    assert rule_of(lambda: d.reject_feasibility_grant([], None)) == "rejection_has_reasons"
    d.reject_feasibility_grant(["envelope_open: none"], None)
    assert d.feasibility_grant["outcome"] == "rejected"
    d.award_feasibility_grant(rules(), envelope(), 2026, 140_000, "promoter", "the envelope is open now")
    assert d.feasibility_grant["outcome"] == "awarded"


# --- financing -----------------------------------------------------------------------------------------


def test_the_proposal_is_not_above_the_ceiling_in_force():
    d = dossier()
    d.request_financing(800_000, dossier_version=7)
    assert rule_of(lambda: d.propose(rules(), envelope(), 2026, 700_001, "x", "user:olga")) == "within_ceiling"
    d.propose(rules(), envelope(), 2026, 700_000, "at the ceiling", "user:olga")
    assert d.financing == FinancingStatus.proposed
    ml = dossier("ML")
    ml.request_financing(800_000, dossier_version=3)
    ml.propose(rules(), envelope(country="ML"), 2026, 1_000_000, "Mali's ceiling is higher", "user:olga")


def test_a_proposal_needs_the_committee_and_an_envelope_for_the_dossier():
    assert rule_of(lambda: dossier().propose(rules(), envelope(), 2026, 1, "x", "user:olga")) == "proposal_after_request"
    d = dossier()
    d.request_financing(1, dossier_version=1)
    assert rule_of(lambda: d.propose(rules(), envelope(country="ML"), 2026, 1, "x", "u")) == "envelope_covers_dossier"
    return_aid = envelope(purpose=Purpose.return_aid)
    assert rule_of(lambda: d.propose(rules(), return_aid, 2026, 1, "x", "u")) == "envelope_covers_dossier"
    d.propose(rules(), envelope(country=None), 2026, 1, "a programme-wide envelope covers every country", "u")


def test_a_financing_draws_on_an_envelope_of_the_year_it_is_proposed_and_approved():
    d = dossier()
    d.request_financing(1, dossier_version=1)
    assert rule_of(lambda: d.propose(rules(), envelope(), 2027, 1, "x", "u")) == "envelope_of_the_year"
    assert d.financing == FinancingStatus.requested
    d, env = proposed()
    # Proposed in December, decided in January: the new year's envelope is to be named.
    assert rule_of(lambda: d.decide("approve", rules(), env, 2027, "x", "user:anna", "v")) == "envelope_of_the_year"
    assert env.reserved_cents == 0 and d.financing == FinancingStatus.proposed


def test_four_eyes_the_proposer_never_decides():
    d, env = proposed()
    for decision in ("approve", "defer", "reject"):
        assert rule_of(lambda: d.decide(decision, rules(), env, 2026, "mine", "user:olga", "v")) == "four_eyes"
    assert env.reserved_cents == 0 and d.financing == FinancingStatus.proposed


def test_the_approval_reserves_and_records_what_it_relied_on():
    d, env = proposed(600_000)
    d.decide("approve", rules(), env, 2026, "a viable shop", "user:anna", "1.0+abc")
    assert env.reserved_cents == 600_000
    assert d.approval == {"amount_cents": 600_000, "approved_by": "user:anna", "rule_version": "test-1",
                          "envelope_id": str(env.id), "dossier_version": 9, "code_version": "1.0+abc"}
    assert rule_of(lambda: d.decide("approve", rules(), env, 2026, "twice", "user:bob", "v")) == "decision_after_proposal"


def test_the_approval_answers_to_the_rules_in_force_then():
    d, env = proposed(700_000)
    lower = rules("test-2", SN={**SN, "startup_ceiling_cents": 500_000})
    assert rule_of(lambda: d.decide("approve", lower, env, 2026, "x", "user:anna", "v")) == "within_ceiling"


def test_an_approval_beyond_the_envelope_is_refused():
    d, env = proposed(600_000, env=envelope(500_000))
    assert rule_of(lambda: d.decide("approve", rules(), env, 2026, "x", "user:anna", "v")) == "envelope_not_overcommitted"
    assert d.financing == FinancingStatus.proposed


def test_a_deferred_dossier_comes_back_and_a_rejected_one_does_not():
    d, env = proposed()
    d.decide("defer", rules(), env, 2026, "more evidence of the market", "user:anna", "v")
    assert d.financing == FinancingStatus.deferred and env.reserved_cents == 0
    d.propose(rules(), env, 2026, 500_000, "smaller", "user:olga")
    d.decide("reject", rules(), env, 2026, "no market", "user:anna", "v")
    assert d.financing == FinancingStatus.rejected
    assert rule_of(lambda: d.propose(rules(), env, 2026, 1, "again", "user:olga")) == "proposal_after_request"
    with pytest.raises(InvalidValue):
        proposed()[0].decide("maybe", rules(), env, 2026, "x", "user:anna", "v")


def test_the_same_committee_version_is_requested_once():
    d = dossier()
    assert d.request_financing(1, dossier_version=4) is True
    assert d.request_financing(1, dossier_version=4) is False
    assert d.request_financing(1, dossier_version=3) is False  # an older one, re-published
    assert rule_of(lambda: d.request_financing(1, dossier_version=5)) == "financing_requested_once"


# --- agreement and tranches -------------------------------------------------------------------------------


def test_the_agreement_commits_fees_and_schedules_tranches_per_the_rules():
    d, env = proposed(600_000)
    assert rule_of(lambda: d.sign_agreement(rules(), env, "2026-05-01", "op")) == "agreement_after_approval"
    d.decide("approve", rules(), env, 2026, "ok", "user:anna", "v")
    d.collect_events()
    d.sign_agreement(rules(), env, "2026-05-01", "operator-1")
    assert names(d) == ["AgreementSigned", "OperatorFeesCommitted", "DisbursementScheduled"]
    assert [t.amount_cents for t in d.tranches] == [300_000, 180_000, 120_000]
    assert env.disbursed_cents == 120_000 and env.reserved_cents == 600_000


def test_the_next_tranche_waits_for_the_reconciliation_of_the_previous():
    d, env = agreed(600_000)
    d.disburse(env, 300_000, "operator:op-1", "VIR-1")
    assert (env.reserved_cents, env.disbursed_cents) == (300_000, 420_000)
    assert rule_of(lambda: d.disburse(env, 180_000, "operator:op-1", "VIR-2")) == "previous_tranche_reconciled"
    assert rule_of(lambda: d.reconcile(1)) == "evidence_covers_tranche"
    d.record_spending_evidence(1, [{"label": "stock", "amount_cents": 200_000}])
    assert rule_of(lambda: d.reconcile(1)) == "evidence_covers_tranche"
    d.record_spending_evidence(1, [{"label": "shelves", "amount_cents": 100_000}])
    d.reconcile(1)
    assert rule_of(lambda: d.reconcile(1)) == "reconcile_once"
    assert rule_of(lambda: d.record_spending_evidence(1, [{"label": "x", "amount_cents": 1}])) \
        == "evidence_before_reconciliation"
    d.disburse(env, 180_000, "operator:op-1", "VIR-2")
    assert d.tranches[1].disbursed


def test_a_tranche_is_paid_as_scheduled_after_the_agreement():
    d, env = proposed()
    assert rule_of(lambda: d.disburse(env, 1, "p", "r")) == "disbursement_after_agreement"
    d, env = agreed(600_000)
    assert rule_of(lambda: d.disburse(env, 300_001, "p", "r")) == "tranche_as_scheduled"
    assert rule_of(lambda: d.record_spending_evidence(2, [{"label": "x", "amount_cents": 1}])) == "tranche_disbursed"
    assert rule_of(lambda: d.reconcile(9)) == "tranche_exists"
    with pytest.raises(InvalidValue):
        d.disburse(env, 300_000, "", "r")


def test_every_tranche_paid_then_none_remains():
    d, env = agreed(600_000)
    for n, amount in enumerate([300_000, 180_000, 120_000], start=1):
        d.disburse(env, amount, "operator:op-1", f"VIR-{n}")
        d.record_spending_evidence(n, [{"label": "spent", "amount_cents": amount}])
        d.reconcile(n)
    assert rule_of(lambda: d.disburse(env, 1, "p", "r")) == "tranches_remaining"
    assert env.reserved_cents == 0 and env.disbursed_cents == 720_000


def test_an_alert_suspends_tranches_until_every_alert_is_resolved():
    d, env = agreed(600_000)
    assert d.suspend("alert-1", "business in difficulty") is True
    assert d.suspend("alert-1", "redelivered") is False
    d.suspend("alert-2", "no visit possible")
    assert rule_of(lambda: d.disburse(env, 300_000, "p", "r")) == "disbursement_not_suspended"
    assert d.resume("alert-1") is True and d.resume("alert-1") is False
    assert rule_of(lambda: d.disburse(env, 300_000, "p", "r")) == "disbursement_not_suspended"
    d.resume("alert-2")
    d.disburse(env, 300_000, "operator:op-1", "VIR-1")


# --- return aid --------------------------------------------------------------------------------------------


OLGA, ANNA = "user:https://id.example.org#olga", "user:https://id.example.org#anna"


def return_aid_envelope(amount=1_000_000, country=None) -> Envelope:
    return envelope(amount, country=country, purpose=Purpose.return_aid)


def propose_aid(env, person=None, status="regular", adults=0, children=0, the_rules=None, year=2026,
                merged=()) -> ReturnAid:
    return ReturnAid.propose(the_rules or rules(), env, year, person or Person(person_id=uuid.uuid4()), "SN", status,
                             adults, children, "going home", proposed_by=OLGA, merged=merged)


def test_return_aid_follows_the_scale_and_its_own_envelope_of_the_year():
    env = return_aid_envelope()
    aid = propose_aid(env, adults=1, children=2)
    assert aid.amount_cents == 65_000 + 50_000 + 2 * 25_000 and aid.status == "proposed"
    assert env.disbursed_cents == 0  # nothing is paid before the decision
    assert propose_aid(env, status="irregular", adults=3, children=9).amount_cents == RETURN_AID["max_cents"]
    assert rule_of(lambda: propose_aid(env, status="tourist")) == "return_aid_status_covered"
    assert rule_of(lambda: propose_aid(envelope())) == "envelope_covers_return_aid"
    assert rule_of(lambda: propose_aid(env, year=2027)) == "envelope_of_the_year"


def test_return_aid_is_decided_by_another_human_and_paid_when_granted():
    env, person = return_aid_envelope(), Person(person_id=uuid.uuid4())
    aid = propose_aid(env, person)
    assert rule_of(lambda: aid.decide("approve", rules(), env, 2026, person, "mine", OLGA)) == "four_eyes"
    # the same subject as recorded before the issuer was: the same person
    assert rule_of(lambda: aid.decide("approve", rules(), env, 2026, person, "mine", "user:olga")) == "four_eyes"
    assert rule_of(lambda: aid.decide("approve", rules(), env, 2027, person, "x", ANNA)) == "envelope_of_the_year"
    aid.collect_events()
    aid.decide("approve", rules(), env, 2026, person, "the file is complete", ANNA)
    assert names(aid) == ["ReturnAidGranted"] and aid.status == "granted" and aid.decided_by == ANNA
    assert env.disbursed_cents == aid.amount_cents
    assert rule_of(lambda: aid.decide("reject", rules(), env, 2026, person, "again", ANNA)) == "decision_after_proposal"
    small, someone = return_aid_envelope(10_000), Person(person_id=uuid.uuid4())
    poor = propose_aid(small, someone)
    assert rule_of(lambda: poor.decide("approve", rules(), small, 2026, someone, "x", ANNA)) \
        == "envelope_not_overcommitted"


def test_return_aid_is_once_per_person_unless_the_rules_say_otherwise():
    env, person = return_aid_envelope(), Person(person_id=uuid.uuid4())
    first = propose_aid(env, person)
    assert rule_of(lambda: propose_aid(env, person)) == "return_aid_per_person"  # pending counts
    first.decide("reject", rules(), env, 2026, person, "incomplete", ANNA)
    assert first.status == "rejected" and person.return_aids == []
    second = propose_aid(env, person)  # a rejected proposal does not count
    second.decide("approve", rules(), env, 2026, person, "complete now", ANNA)
    assert rule_of(lambda: propose_aid(env, person)) == "return_aid_per_person"
    twice = check_rules("test-2", {"SN": SN}, {**RETURN_AID, "max_per_person": 2})
    assert propose_aid(env, person, the_rules=twice).status == "proposed"
    with pytest.raises(InvalidValue):
        check_rules("test-3", {"SN": SN}, {**RETURN_AID, "max_per_person": 0})
    assert rules().return_aid.max_per_person == 1  # a scale published without it


def test_a_return_aid_granted_at_once_before_proposals_existed_is_read_back():
    from eventsourcing.persistence import (DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper, StoredEvent,
                                           UUIDAsHex)
    from eventsourcing.utils import get_topic

    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    mapper = Mapper(transcoder=transcoder)
    aid_id, person_id = uuid.uuid4(), uuid.uuid4()
    legacy = {"originator_topic": get_topic(ReturnAid), "person_id": person_id, "country": "SN",
              "residence_status": "regular", "adults": 0, "children": 0, "amount_cents": 65_000,
              "envelope_id": str(uuid.uuid4()), "rule_version": "2025.1", "justification": "family",
              "timestamp": Envelope.open("return_aid", 2025, None, 1).created_on}
    stored = StoredEvent(aid_id, 1, get_topic(ReturnAid.ReturnAidGranted), transcoder.encode(legacy))
    aid = mapper.to_domain_event(stored).mutate(None)
    assert isinstance(aid, ReturnAid) and aid.id == aid_id and aid.version == 1
    assert (aid.status, aid.amount_cents, aid.person_id, aid.proposed_by) == ("granted", 65_000, person_id, None)


def test_domain_values_survive_a_deep_copy_of_the_rules():
    # The rules travel in events as plain data: what is published is what is read back.
    book = Rulebook()
    data = copy.deepcopy(example_rules())
    book.publish(data["version"], data["countries"], data["return_aid"], data["min_planned_jobs"])
    assert book.in_force() == check_rules(data["version"], data["countries"], data["return_aid"],
                                          data["min_planned_jobs"])


def test_a_study_request_is_heard_once():
    d = dossier()
    assert d.request_feasibility_grant(6, "operator-1") is True
    assert d.local_operator_id == "operator-1"
    assert d.request_feasibility_grant(6, "operator-1") is False  # redelivered
    assert d.request_feasibility_grant(5, None) is False  # an older one, re-published
    assert d.request_feasibility_grant(9, None) is True and d.local_operator_id == "operator-1"
    assert names(d) == ["DossierRegistered", "FeasibilityGrantRequested", "FeasibilityGrantRequested"]


def test_an_ended_dossier_gives_back_what_was_reserved_and_nothing_more_goes_out():
    d, env = agreed(600_000)
    d.disburse(env, 300_000, "operator:op-1", "VIR-1")
    d.collect_events()
    assert d.end("dossier_withdrawn", env) is True
    assert names(d) == ["FinancingEnded"]
    assert (env.reserved_cents, env.disbursed_cents, env.available_cents) == (0, 420_000, 10_000_000 - 420_000)
    assert d.end("dossier_closed: success", env) is False
    assert rule_of(lambda: d.disburse(env, 180_000, "p", "r")) == "disbursement_after_agreement"


def test_a_pending_proposal_ends_with_the_dossier_and_cannot_be_approved():
    d, env = proposed()
    assert d.end("dossier_withdrawn", None) is True
    assert env.reserved_cents == 0
    assert rule_of(lambda: d.decide("approve", rules(), env, 2026, "late", "user:anna", "v")) == "decision_after_proposal"
    assert dossier().end("dossier_withdrawn", None) is False  # never at the committee: nothing to end


def test_return_aids_of_merged_person_records_count_together():
    env = return_aid_envelope()
    first, second = Person(person_id=uuid.uuid4()), Person(person_id=uuid.uuid4())
    propose_aid(env, first)
    assert second.record_merge(first.person_id) and not second.record_merge(first.person_id)
    assert rule_of(lambda: propose_aid(env, second, merged=[first])) == "return_aid_per_person"
    assert second.record_unmerge(first.person_id) and second.same_as == []
    propose_aid(env, second)
    assert len(second.return_aids) == 1


def test_of_two_aids_pending_on_records_merged_since_only_one_is_granted():
    env = return_aid_envelope()
    first, second = Person(person_id=uuid.uuid4()), Person(person_id=uuid.uuid4())
    one, other = propose_aid(env, first), propose_aid(env, second)
    assert rule_of(lambda: other.decide("approve", rules(), env, 2026, second, "x", ANNA, merged=[first])) \
        == "return_aid_per_person"
    one.decide("reject", rules(), env, 2026, first, "the other record's file is the one", ANNA)
    other.decide("approve", rules(), env, 2026, second, "complete", ANNA, merged=[first])
    assert other.status == "granted"
