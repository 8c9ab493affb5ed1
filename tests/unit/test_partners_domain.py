"""Partners' domain: the rules of the network and the choice of partners. Pure: no I/O."""

from __future__ import annotations

import random
from datetime import date
from uuid import uuid4

import pytest

from services.partners.domain import (
    Assignment,
    AssignmentStatus,
    Candidate,
    Choice,
    Partner,
    PartnerKind,
    PartnerStatus,
    choose_partners,
)
from shared.domain import InvalidValue, RuleViolated

TODAY = date(2026, 6, 15)


def structure(**overrides: object) -> Partner:
    values = {"name": "Aide IDF", "kind": "support_structure", "region": "FR-IDF", "countries": [],
              "sectors": ["Trade"], "capacity": 10}
    values.update(overrides)
    return Partner.register(**values)  # type: ignore[arg-type]


def operator(**overrides: object) -> Partner:
    values = {"name": "Bamako Conseil", "kind": "local_operator", "region": None, "countries": ["SN", "ML", "ML"],
              "sectors": ["agriculture"], "capacity": 5}
    values.update(overrides)
    return Partner.register(**values)  # type: ignore[arg-type]


def names(partner: Partner) -> list[str]:
    return [type(e).__name__ for e in partner.collect_events()]


# --- registration ------------------------------------------------------------------------------


def test_registering_normalises_coverage():
    partner = operator(sectors=[" Trade  and transport", "trade and transport", "Agriculture"])
    assert partner.kind == PartnerKind.local_operator
    assert partner.status == PartnerStatus.active
    assert partner.countries == ["ML", "SN"]
    assert partner.sectors == ["agriculture", "trade and transport"]
    assert names(partner) == ["PartnerRegistered"]


def test_a_financial_partner_may_cover_nothing():
    partner = Partner.register(name="AFD", kind="financial_partner", region=None, countries=[], sectors=[],
                               capacity=1)
    assert partner.kind == PartnerKind.financial_partner


@pytest.mark.parametrize("overrides, field", [
    ({"region": None}, "region"),
    ({"region": "FR-XYZ"}, "region"),
    ({"countries": ["ML"]}, "countries"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"capacity": 0}, "capacity"),
    ({"capacity": 10_001}, "capacity"),
    ({"capacity": True}, "capacity"),
    ({"sectors": [""]}, "sectors"),
    ({"sectors": ["s" * 61]}, "sectors"),
    ({"sectors": [f"sector {i}" for i in range(31)]}, "sectors"),
    ({"kind": "bank"}, "kind"),
])
def test_a_support_structure_with_bad_values_is_refused(overrides, field):
    with pytest.raises(InvalidValue) as caught:
        structure(**overrides)
    assert caught.value.field == field


@pytest.mark.parametrize("overrides, field", [
    ({"countries": []}, "countries"),
    ({"countries": ["ml"]}, "countries"),
    ({"countries": ["MLI"]}, "countries"),
    ({"region": "FR-IDF"}, "region"),
])
def test_a_local_operator_with_bad_values_is_refused(overrides, field):
    with pytest.raises(InvalidValue) as caught:
        operator(**overrides)
    assert caught.value.field == field


# --- accreditation, coverage, suspension, feed ---------------------------------------------------


def test_accreditation_is_recorded_and_can_be_renewed():
    partner = structure()
    partner.accredit("CONV-2026-01", date(2026, 1, 1), date(2026, 12, 31))
    partner.accredit("CONV-2027-01", date(2027, 1, 1), date(2027, 12, 31))
    assert partner.accreditation == {"agreement": "CONV-2027-01", "valid_from": "2027-01-01",
                                     "valid_to": "2027-12-31"}
    assert names(partner) == ["PartnerRegistered", "PartnerAccredited", "PartnerAccredited"]


def test_the_same_accreditation_twice_is_a_broken_rule():
    partner = structure()
    partner.accredit("CONV-1", date(2026, 1, 1), date(2026, 12, 31))
    with pytest.raises(RuleViolated) as caught:
        partner.accredit("CONV-1", date(2026, 1, 1), date(2026, 12, 31))
    assert caught.value.rule == "accreditation_changes"


def test_an_agreement_cannot_end_before_it_starts():
    with pytest.raises(InvalidValue) as caught:
        structure().accredit("CONV-1", date(2026, 12, 31), date(2026, 1, 1))
    assert caught.value.field == "valid_to"


def test_coverage_changes_are_checked_against_the_kind():
    partner = operator()
    partner.change_coverage(region=None, countries=["TG"], sectors=["crafts"], capacity=8)
    assert (partner.countries, partner.sectors, partner.capacity) == (["TG"], ["crafts"], 8)
    with pytest.raises(InvalidValue):
        partner.change_coverage(region="FR-IDF", countries=["TG"], sectors=[], capacity=8)
    with pytest.raises(RuleViolated) as caught:
        partner.change_coverage(region=None, countries=["TG"], sectors=["Crafts"], capacity=8)
    assert caught.value.rule == "coverage_changes"
    assert names(partner) == ["PartnerRegistered", "PartnerCoverageChanged"]


def test_suspension_and_reinstatement_alternate():
    partner = structure()
    partner.suspend("agreement under review")
    assert partner.status == PartnerStatus.suspended
    assert partner.suspension_reason == "agreement under review"
    with pytest.raises(RuleViolated) as caught:
        partner.suspend("again")
    assert caught.value.rule == "suspend_active_partner"
    partner.reinstate()
    assert partner.status == PartnerStatus.active
    assert partner.suspension_reason is None
    with pytest.raises(RuleViolated) as caught:
        partner.reinstate()
    assert caught.value.rule == "reinstate_suspended_partner"
    assert names(partner) == ["PartnerRegistered", "PartnerSuspended", "PartnerReinstated"]


def test_a_suspension_needs_a_reason():
    with pytest.raises(InvalidValue):
        structure().suspend("  ")


def test_a_feed_is_enabled_once_and_not_for_a_suspended_partner():
    partner = operator()
    partner.enable_feed()
    assert partner.feed_enabled
    with pytest.raises(RuleViolated) as caught:
        partner.enable_feed()
    assert caught.value.rule == "feed_enabled_once"
    suspended = operator()
    suspended.suspend("audit")
    with pytest.raises(RuleViolated) as caught:
        suspended.enable_feed()
    assert caught.value.rule == "feed_for_active_partner"


def test_replaying_the_events_gives_the_same_partner():
    partner = operator()
    partner.accredit("CONV-1", date(2026, 1, 1), date(2026, 12, 31))
    partner.suspend("audit")
    events = partner.collect_events()
    replayed = None
    for e in events:
        replayed = e.mutate(replayed)
    assert vars(replayed) == vars(partner)


# --- choosing partners ----------------------------------------------------------------------------


def ss(id: str, caseload: int = 0, *, name: str | None = None, region: str = "FR-IDF", capacity: int = 10,
       **more: object) -> Candidate:
    return Candidate(id=id, name=name or id, kind=PartnerKind.support_structure, region=region, countries=(),
                     sectors=(), capacity=capacity, caseload=caseload, **more)  # type: ignore[arg-type]


def lo(id: str, caseload: int = 0, *, name: str | None = None, countries: tuple[str, ...] = ("ML",),
       sectors: tuple[str, ...] = (), capacity: int = 10, **more: object) -> Candidate:
    return Candidate(id=id, name=name or id, kind=PartnerKind.local_operator, region=None, countries=countries,
                     sectors=sectors, capacity=capacity, caseload=caseload, **more)  # type: ignore[arg-type]


def choose(candidates: list[Candidate], country: str = "ML", region: str = "FR-IDF", sector: str = "trade") -> Choice:
    return choose_partners(candidates, country=country, french_region=region, sector=sector, today=TODAY)


def test_the_least_loaded_partners_of_the_region_and_country_are_chosen():
    choice = choose([ss("s-busy", 3), ss("s-free", 1), ss("s-lyon", 0, region="FR-ARA"),
                     lo("o-busy", 4), lo("o-free", 2), lo("o-dakar", 0, countries=("SN",))])
    assert (choice.support_structure_id, choice.local_operator_id) == ("s-free", "o-free")
    assert choice.complete and choice.missing == []
    assert not choice.sector_matched


def test_an_operator_of_the_dossiers_sector_comes_first_however_loaded():
    choice = choose([ss("s"), lo("o-idle", 0, sectors=("agriculture",)), lo("o-trade", 7, sectors=("Trade",))])
    assert choice.local_operator_id == "o-trade"
    assert choice.sector_matched


def test_among_operators_of_the_sector_the_least_loaded_wins():
    choice = choose([ss("s"), lo("o-a", 5, sectors=("trade",)), lo("o-b", 2, sectors=("trade", "crafts"))],
                    sector=" TRADE ")
    assert choice.local_operator_id == "o-b"
    assert choice.sector_matched


@pytest.mark.parametrize("unavailable", [
    {"suspended": True},
    {"caseload": 10},
    {"caseload": 11},
    {"accredited_from": date(2026, 1, 1), "accredited_to": date(2026, 6, 14)},
    {"accredited_from": date(2026, 6, 16), "accredited_to": date(2026, 12, 31)},
])
def test_suspended_expired_not_yet_valid_and_full_partners_are_passed_over(unavailable):
    excluded = {"caseload": 0, **unavailable}
    choice = choose([ss("s-out", **excluded), ss("s-in", 9), lo("o-out", **excluded), lo("o-in", 9)])
    assert (choice.support_structure_id, choice.local_operator_id) == ("s-in", "o-in")


def test_an_accreditation_in_force_today_counts_its_first_and_last_days():
    first = ss("s", accredited_from=TODAY, accredited_to=date(2026, 12, 31))
    last = lo("o", accredited_from=date(2026, 1, 1), accredited_to=TODAY)
    choice = choose([first, last])
    assert (choice.support_structure_id, choice.local_operator_id) == ("s", "o")


def test_financial_partners_are_never_chosen():
    bank = Candidate(id="b", name="b", kind=PartnerKind.financial_partner, region="FR-IDF", countries=("ML",),
                     sectors=("trade",), capacity=10, caseload=0)
    assert choose([bank]).missing == ["support_structure", "local_operator"]


@pytest.mark.parametrize("candidates, missing", [
    ([], ["support_structure", "local_operator"]),
    ([ss("s")], ["local_operator"]),
    ([lo("o")], ["support_structure"]),
    ([ss("s", region="FR-ARA"), lo("o", countries=("SN",))], ["support_structure", "local_operator"]),
])
def test_a_dossier_without_a_partner_for_a_role_waits_for_it(candidates, missing):
    choice = choose(candidates)
    assert not choice.complete
    assert choice.missing == missing


def test_ties_break_on_caseload_then_name_then_id_whatever_the_order():
    candidates = [ss("s-3", 1, name="Beta"), ss("s-2", 1, name="Alpha"), ss("s-1", 1, name="Alpha"),
                  ss("s-0", 2, name="Aaa"),
                  lo("o-2", 0, name="Same"), lo("o-1", 0, name="Same"), lo("o-0", 0, name="Zed")]
    for _ in range(20):
        random.shuffle(candidates)
        choice = choose(candidates)
        assert (choice.support_structure_id, choice.local_operator_id) == ("s-1", "o-1")


# --- the assignment of a dossier --------------------------------------------------------------------


def request(**overrides: object) -> Assignment:
    values = {"project_id": uuid4(), "country": "ML", "french_region": "FR-IDF", "sector": "trade"}
    values.update(overrides)
    return Assignment.request(**values)  # type: ignore[arg-type]


def test_an_assignment_is_identified_by_its_dossier():
    project_id = uuid4()
    assert request(project_id=project_id).id == project_id


@pytest.mark.parametrize("overrides, field", [
    ({"country": "Mali"}, "country"),
    ({"french_region": "Paris"}, "french_region"),
    ({"sector": ""}, "sector"),
])
def test_a_request_with_bad_facts_is_refused(overrides, field):
    with pytest.raises(InvalidValue) as caught:
        request(**overrides)
    assert caught.value.field == field


def test_a_complete_choice_assigns_the_dossier_at_once():
    assignment = request()
    assert assignment.assign(Choice("s", "o", sector_matched=True))
    assert assignment.status == AssignmentStatus.assigned
    assert (assignment.support_structure_id, assignment.local_operator_id) == ("s", "o")
    assert assignment.involves("s") and assignment.involves("o") and not assignment.involves("x")
    events = assignment.collect_events()
    assert [type(e).__name__ for e in events] == ["AssignmentRequested", "PartnersAssigned"]
    assert events[1].project_id == str(assignment.id) and events[1].sector_matched is True


def test_a_dossier_waits_then_gets_its_partners_and_retries_without_change_write_nothing():
    assignment = request()
    assert assignment.assign(Choice(None, None))
    assert assignment.status == AssignmentStatus.pending
    assert assignment.missing == ["support_structure", "local_operator"]
    assert not assignment.assign(Choice(None, None))  # nothing new: no event
    assert assignment.assign(Choice("s", None))  # a support structure appeared: still waiting, for less
    assert assignment.missing == ["local_operator"]
    assert assignment.assign(Choice("s", "o"))
    events = assignment.collect_events()
    assert [type(e).__name__ for e in events] == [
        "AssignmentRequested", "AssignmentPending", "AssignmentPending", "PartnersAssigned"]
    assert events[1].missing == ["support_structure", "local_operator"]
    assert (events[1].country, events[1].french_region, events[1].sector) == ("ML", "FR-IDF", "trade")


def test_an_assigned_dossier_is_not_assigned_again():
    assignment = request()
    assignment.assign(Choice("s", "o"))
    with pytest.raises(RuleViolated) as caught:
        assignment.assign(Choice("s2", "o2"))
    assert caught.value.rule == "assign_once"


def test_ending_frees_the_partners_once():
    assignment = request()
    assignment.assign(Choice("s", "o"))
    assignment.end("dossier_withdrawn")
    assert assignment.status == AssignmentStatus.ended
    ended = assignment.collect_events()[-1]
    assert (ended.support_structure_id, ended.local_operator_id, ended.reason) == ("s", "o", "dossier_withdrawn")
    with pytest.raises(RuleViolated) as caught:
        assignment.end("again")
    assert caught.value.rule == "end_once"
    with pytest.raises(RuleViolated) as caught:
        assignment.assign(Choice("s", "o"))
    assert caught.value.rule == "assignment_is_open"


def test_a_pending_dossier_can_end_without_partners():
    assignment = request()
    assignment.assign(Choice(None, "o"))
    assignment.end("dossier_closed: abandoned")
    ended = assignment.collect_events()[-1]
    assert (ended.support_structure_id, ended.local_operator_id) == (None, None)
    assert assignment.missing == []
