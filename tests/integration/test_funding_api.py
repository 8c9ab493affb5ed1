"""Funding on real PostgreSQL and Kafka: rules, envelopes, four-eyes, ceilings, the envelope race,
tranches and suspension, redelivered records, the ledger, bad input and roles.

Intake's and followup's records are produced here the way their relays publish them.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from services.funding.application import FundingApplication
from services.funding.domain import Purpose, ReturnAid
from services.funding.main import create_app
from shared.conflicts import retry_on_conflict
from shared.domain import RuleViolated
from shared.store import CommandContext, acting
from shared.auth import issue_token
from tests.conftest import actor, bearer, wait_for
from tests.integration.funding_tools import (
    alert,
    record,
    eligible,
    new_project,
    person_known,
    persons_merged,
    publish,
    rules_body,
    sent_to_committee,
    study_requested,
)

pytestmark = pytest.mark.integration
YEAR = datetime.now(timezone.utc).year


@pytest.fixture
def funding(make_settings):
    settings = make_settings("funding")
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        client.admin = bearer(settings, "admin", sub="root")
        client.officer = bearer(settings, "funding_officer", sub="olga")
        client.approver = bearer(settings, "funding_approver", sub="anna")
        client.auditor = bearer(settings, "auditor", sub="audrey")
        yield client


def stored_events(client) -> int:
    return client.app.state.runtime.app.recorder.max_notification_id() or 0


def ready(client, amount: int = 10_000_000, country: str | None = "SN") -> str:
    """Rules published and an envelope open; returns the envelope's id."""
    if client.get("/v1/rules", headers=client.auditor).json()["in_force"] is None:
        assert client.post("/v1/rules", json=rules_body(), headers=client.admin).status_code == 201
    body = {"year": YEAR, "amount_cents": amount, **({"country": country} if country else {})}
    r = client.post("/v1/envelopes", json=body, headers=client.approver)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def financing(client, project_id: str) -> dict:
    r = client.get(f"/v1/financing/{project_id}", headers=client.auditor)
    return r.json() if r.status_code == 200 else {}


def at_committee(client, *project_ids: str, study: bool = False) -> None:
    records = []
    for project_id in project_ids:
        records.append(eligible(project_id))
        if study:
            records.append(study_requested(project_id))
        records.append(sent_to_committee(project_id))
    publish(client.settings, "intake", records)
    for project_id in project_ids:
        wait_for(lambda: financing(client, project_id).get("financing") == "requested", what="FinancingRequested")


def proposed(client, envelope_id: str, amount: int = 600_000, study: bool = False) -> str:
    project_id = new_project()
    at_committee(client, project_id, study=study)
    r = client.post(f"/v1/financing/{project_id}/proposal", headers=client.officer,
                    json={"amount_cents": amount, "envelope_id": envelope_id, "justification": "a sound plan"})
    assert r.status_code == 200, r.text
    return project_id


def approve(client, project_id: str, who=None):
    return client.post(f"/v1/financing/{project_id}/decision", headers=who or client.approver,
                       json={"decision": "approve", "justification": "viable, jobs for the village"})


def refused(response, rule: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["rule"] == rule


# --- rules and envelopes -------------------------------------------------------------------------


def test_only_an_admin_publishes_rules_and_a_published_version_never_changes(funding):
    assert funding.post("/v1/rules", json=rules_body(), headers=funding.approver).status_code == 403
    assert funding.post("/v1/rules", json=rules_body(), headers=funding.officer).status_code == 403
    assert funding.post("/v1/rules", json=rules_body()).status_code == 401
    r = funding.post("/v1/rules", json=rules_body(), headers=funding.admin)
    assert r.status_code == 201 and r.json()["countries"]["ML"]["startup_ceiling_cents"] == 1_000_000
    changed = rules_body()
    changed["countries"]["SN"]["startup_ceiling_cents"] = 1
    refused(funding.post("/v1/rules", json=changed, headers=funding.admin), "rule_version_immutable")
    assert funding.post("/v1/rules", json=rules_body("2026.2"), headers=funding.admin).status_code == 201
    assert funding.get("/v1/rules", headers=funding.auditor).json() == {"in_force": "2026.2",
                                                                        "versions": ["2026.1", "2026.2"]}
    assert funding.get("/v1/rules/2026.1", headers=funding.auditor).json()["countries"]["SN"][
        "startup_ceiling_cents"] == 700_000
    assert funding.get("/v1/rules/nope", headers=funding.auditor).status_code == 404


def test_an_envelope_opens_once_adjusts_and_shows_its_totals(funding):
    envelope_id = ready(funding, amount=2_000_000)
    again = funding.post("/v1/envelopes", json={"year": YEAR, "country": "SN", "amount_cents": 5},
                         headers=funding.approver)
    refused(again, "envelope_opened_once")
    project_id = proposed(funding, envelope_id, 600_000)
    assert approve(funding, project_id).status_code == 200
    refused(funding.post(f"/v1/envelopes/{envelope_id}/adjust", json={"amount_cents": 500_000, "reason": "cut"},
                         headers=funding.approver), "envelope_covers_commitments")
    adjusted = funding.post(f"/v1/envelopes/{envelope_id}/adjust", json={"amount_cents": 3_000_000,
                                                                         "reason": "supplementary budget"},
                            headers=funding.approver)
    assert adjusted.status_code == 200
    funding.app.state.runtime.projector.catch_up()
    dashboard = funding.get(f"/v1/envelopes/{envelope_id}", headers=funding.auditor).json()
    assert (dashboard["allocated_cents"], dashboard["reserved_cents"], dashboard["disbursed_cents"],
            dashboard["available_cents"]) == (3_000_000, 600_000, 0, 2_400_000)
    assert dashboard["decisions"]["FinancingApproved"] == {"count": 1, "amount_cents": 600_000}
    listed = funding.get(f"/v1/envelopes?year={YEAR}&country=SN", headers=funding.auditor).json()
    assert [e["available_cents"] for e in listed] == [2_400_000]


# --- feasibility grants from intake's events ------------------------------------------------------------


def test_a_requested_study_gets_its_grant_from_the_rules_or_a_reasoned_refusal(funding):
    early = new_project()
    publish(funding.settings, "intake", [eligible(early), study_requested(early)])
    grant = wait_for(lambda: financing(funding, early).get("feasibility_grant"), what="the grant's outcome")
    assert grant["outcome"] == "rejected" and grant["reasons"][0].startswith("rules_published")

    envelope_id = ready(funding, amount=1_000_000)
    r = funding.post("/v1/feasibility-grants", headers=funding.officer,
                     json={"project_id": early, "amount_cents": 140_000, "justification": "the envelope is open now"})
    assert r.status_code == 200 and r.json()["feasibility_grant"]["outcome"] == "awarded"
    # The study's request re-published (after a relay's crash) is not answered again.
    before, seen = stored_events(funding), processed(funding)
    publish(funding.settings, "intake", [study_requested(early)])
    wait_for(lambda: processed(funding) > seen, what="the redelivered request")
    assert stored_events(funding) == before

    project_id = new_project()
    publish(funding.settings, "intake", [eligible(project_id), study_requested(project_id, "operator-7")])
    grant = wait_for(lambda: (financing(funding, project_id).get("feasibility_grant") or {}).get("outcome") == "awarded"
                     and financing(funding, project_id)["feasibility_grant"], what="the award")
    assert grant["amount_cents"] == 140_000 and grant["payee"] == "operator:operator-7"
    assert grant["rule_version"] == "2026.1" and grant["envelope_id"] == envelope_id
    envelope = funding.get(f"/v1/envelopes/{envelope_id}", headers=funding.auditor).json()
    assert envelope["disbursed_cents"] == 280_000


# --- financing: four-eyes, ceilings, the race ---------------------------------------------------------------


def test_four_eyes_the_proposer_cannot_decide_and_the_approval_records_what_it_relied_on(funding):
    envelope_id = ready(funding)
    project_id = proposed(funding, envelope_id)
    # Olga proposed; even holding the approver role she may not approve her own proposal.
    olga_approver = bearer(funding.settings, "funding_approver", sub="olga")
    before = stored_events(funding)
    refused(approve(funding, project_id, olga_approver), "four_eyes")
    assert approve(funding, project_id, funding.officer).status_code == 403  # an officer does not decide
    assert stored_events(funding) == before
    r = approve(funding, project_id)
    assert r.status_code == 200, r.text
    approval = r.json()["approval"]
    assert approval["approved_by"] == actor(funding.settings, "anna") and approval["rule_version"] == "2026.1"
    assert approval["dossier_version"] == 8 and approval["envelope_id"] == envelope_id
    assert approval["code_version"]
    refused(approve(funding, project_id, bearer(funding.settings, "funding_approver", sub="bob")),
            "decision_after_proposal")


def test_a_token_mixing_partner_and_staff_roles_is_refused_so_nobody_approves_their_own_proposal(funding):
    envelope_id = ready(funding)
    project_id = proposed(funding, envelope_id)
    # Olga proposed; a token naming her a partner too used to be recorded as the partner, not as her.
    mixed = {"Authorization": "Bearer " + issue_token(funding.settings, "funding_approver", sub="olga",
                                                      partner_id="operator-1",
                                                      roles=["funding_approver", "partner"])}
    before = stored_events(funding)
    r = approve(funding, project_id, mixed)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert "partner role alone" in r.json()["detail"]
    assert funding.get(f"/v1/financing/{project_id}", headers=mixed).status_code == 403
    assert stored_events(funding) == before


def test_a_proposal_above_the_ceiling_in_force_is_refused(funding):
    envelope_id = ready(funding)
    project_id = new_project()
    at_committee(funding, project_id)
    before = stored_events(funding)
    r = funding.post(f"/v1/financing/{project_id}/proposal", headers=funding.officer,
                     json={"amount_cents": 700_001, "envelope_id": envelope_id, "justification": "too much"})
    refused(r, "within_ceiling")
    assert stored_events(funding) == before
    # A later version of the rules raises Senegal's ceiling to 10,000 EUR: the same proposal passes.
    higher = rules_body("2026.2")
    higher["countries"]["SN"]["startup_ceiling_cents"] = 1_000_000
    assert funding.post("/v1/rules", json=higher, headers=funding.admin).status_code == 201
    r = funding.post(f"/v1/financing/{project_id}/proposal", headers=funding.officer,
                     json={"amount_cents": 700_001, "envelope_id": envelope_id, "justification": "new rules"})
    assert r.status_code == 200 and r.json()["proposal"]["rule_version"] == "2026.2"


def test_concurrent_approvals_never_overcommit_the_envelope(funding):
    """Six approvals race for an envelope that holds three of them (and a little more), from three
    "processes": the service over HTTP and two more applications on the same store, as API
    processes beside each other would be. Only the store's optimistic concurrency stands between
    them (each process takes its own turns on an envelope, not the others')."""
    envelope_id = ready(funding, amount=3 * 500_000 + 200_000)
    projects = [proposed(funding, envelope_id, 500_000) for _ in range(6)]
    others = [FundingApplication(funding.settings) for _ in range(2)]
    start = threading.Barrier(len(projects))
    outcomes: dict[str, str] = {}

    def over_http(project_id: str, n: int) -> None:
        start.wait()
        r = approve(funding, project_id, bearer(funding.settings, "funding_approver", sub=f"approver-{n}"))
        outcomes[project_id] = "approved" if r.status_code == 200 else r.json().get("rule", r.text)

    def in_process(app: FundingApplication, project_id: str, n: int) -> None:
        start.wait()
        try:
            with acting(CommandContext(actor=f"user:approver-{n}")):
                app.decide(uuid.UUID(project_id), "approve", "from another process", f"user:approver-{n}", YEAR)
            outcomes[project_id] = "approved"
        except RuleViolated as refusal:
            outcomes[project_id] = refusal.rule

    threads = [threading.Thread(target=over_http, args=(projects[0], 0)),
               threading.Thread(target=over_http, args=(projects[1], 1))]
    threads += [threading.Thread(target=in_process, args=(others[k % 2], projects[k], k)) for k in range(2, 6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for app in others:
            app.close()
    assert sorted(outcomes.values()) == ["approved"] * 3 + ["envelope_not_overcommitted"] * 3, outcomes
    envelope = funding.get(f"/v1/envelopes/{envelope_id}", headers=funding.auditor).json()
    assert (envelope["reserved_cents"], envelope["available_cents"]) == (1_500_000, 200_000)
    approved = [p for p in projects if financing(funding, p)["financing"] == "approved"]
    assert sorted(approved) == sorted(p for p, outcome in outcomes.items() if outcome == "approved")
    # The store agrees with the aggregate: exactly three reservations were ever recorded.
    app = funding.app.state.runtime.app
    reservations = [e for e in app.events.get(uuid.UUID(envelope_id)) if type(e).__name__ == "EnvelopeFundsReserved"]
    assert sorted(e.project_id for e in reservations) == sorted(approved)


def test_an_approval_that_lost_the_race_is_decided_again_on_the_new_totals(funding):
    """Deterministic: B reads the envelope, A takes the last euros, B's save is refused by the store
    and B, deciding again on what A left, is refused by the rule."""
    envelope_id = ready(funding, amount=700_000)
    first, second = proposed(funding, envelope_id, 500_000), proposed(funding, envelope_id, 500_000)
    a, b = FundingApplication(funding.settings), FundingApplication(funding.settings)
    attempts = []

    def b_approves() -> None:
        dossier, envelope = b.get_dossier(uuid.UUID(second)), b.get_envelope(uuid.UUID(envelope_id))
        attempts.append(envelope.available_cents)
        if len(attempts) == 1:
            a.decide(uuid.UUID(first), "approve", "first", "user:anna", YEAR)  # meanwhile, in another process
        dossier.decide("approve", b.rules_in_force(), envelope, YEAR, "second", "user:bob", "v")
        b.save(dossier, envelope)

    try:
        with pytest.raises(RuleViolated) as refused_again:
            retry_on_conflict(b_approves)
    finally:
        a.close()
        b.close()
    assert refused_again.value.rule == "envelope_not_overcommitted"
    assert attempts == [700_000, 200_000]  # read, lost the race, read again
    assert financing(funding, second)["financing"] == "proposed"
    assert funding.get(f"/v1/envelopes/{envelope_id}", headers=funding.auditor).json()["reserved_cents"] == 500_000


# --- agreement, tranches, suspension -------------------------------------------------------------------


def test_tranches_wait_for_reconciliation_and_for_alerts_to_be_resolved(funding):
    envelope_id = ready(funding)
    project_id = proposed(funding, envelope_id, 600_000, study=True)
    assert approve(funding, project_id).status_code == 200
    pay = {"amount_cents": 300_000, "payee": "operator:operator-1", "payment_reference": "VIR-2026-001"}
    refused(funding.post(f"/v1/financing/{project_id}/tranches", json=pay, headers=funding.officer),
            "disbursement_after_agreement")
    signed = funding.post(f"/v1/financing/{project_id}/agreement", json={"signed_on": "2026-05-04"},
                          headers=funding.officer)
    assert signed.status_code == 200, signed.text
    assert [t["amount_cents"] for t in signed.json()["tranches"]] == [300_000, 180_000, 120_000]
    assert funding.post(f"/v1/financing/{project_id}/tranches", json=pay, headers=funding.officer).status_code == 200
    second = {"amount_cents": 180_000, "payee": "operator:operator-1", "payment_reference": "VIR-2026-002"}
    refused(funding.post(f"/v1/financing/{project_id}/tranches", json=second, headers=funding.officer),
            "previous_tranche_reconciled")
    evidence = {"items": [{"label": "stock", "amount_cents": 250_000}, {"label": "shelves", "amount_cents": 50_000}]}
    stranger = bearer(funding.settings, "partner", partner_id="someone-else")
    assert funding.post(f"/v1/financing/{project_id}/tranches/1/evidence", json=evidence,
                        headers=stranger).status_code == 404
    operator = bearer(funding.settings, "partner", partner_id="operator-1")
    sent = funding.post(f"/v1/financing/{project_id}/tranches/1/evidence", json=evidence, headers=operator)
    assert sent.status_code == 200 and sent.json()["tranches"][0]["evidenced_cents"] == 300_000
    # The operator reads back its tranches, not the officers who proposed and approved nor the payees.
    assert "olga" not in sent.text and "anna" not in sent.text and "payee" not in sent.text
    assert funding.post(f"/v1/financing/{project_id}/tranches/1/reconciliation",
                        headers=funding.officer).status_code == 200

    # Followup raises an alert on the business: the next tranche is held until it is resolved.
    publish(funding.settings, "followup", [alert("AlertRaised", project_id, "alert-1", 3)])
    wait_for(lambda: financing(funding, project_id)["suspended"], what="DisbursementSuspended")
    refused(funding.post(f"/v1/financing/{project_id}/tranches", json=second, headers=funding.officer),
            "disbursement_not_suspended")
    publish(funding.settings, "followup", [alert("AlertResolved", project_id, "alert-1", 4)])
    wait_for(lambda: not financing(funding, project_id)["suspended"], what="DisbursementResumed")
    r = funding.post(f"/v1/financing/{project_id}/tranches", json=second, headers=funding.officer)
    assert r.status_code == 200 and [t["disbursed"] for t in r.json()["tranches"]] == [True, True, False]
    envelope = funding.get(f"/v1/envelopes/{envelope_id}", headers=funding.auditor).json()
    # Reserved: what is left of the grant; disbursed: two tranches, the feasibility grant, the operator fees.
    assert envelope["reserved_cents"] == 120_000
    assert envelope["disbursed_cents"] == 300_000 + 180_000 + 140_000 + 120_000


def processed(client) -> int:
    return client.app.state.runtime.consumers[0].processed


def test_redelivered_and_replayed_records_change_nothing(funding):
    envelope_id = ready(funding)
    project_id = proposed(funding, envelope_id, 500_000, study=True)
    assert approve(funding, project_id).status_code == 200
    publish(funding.settings, "followup", [alert("AlertRaised", project_id, "alert-9", 2)])
    wait_for(lambda: financing(funding, project_id)["suspended"], what="DisbursementSuspended")
    before = stored_events(funding)
    state = financing(funding, project_id)

    # The same events again, as a relay re-publishes them after a crash (new offsets, same events).
    seen = processed(funding)
    publish(funding.settings, "intake", [eligible(project_id), study_requested(project_id),
                                         sent_to_committee(project_id)])
    publish(funding.settings, "followup", [alert("AlertRaised", project_id, "alert-9", 2)])
    wait_for(lambda: processed(funding) >= seen + 4, what="the consumer to read the records again")
    assert stored_events(funding) == before
    assert financing(funding, project_id) == state

    # A restart resumes from the tracking records: nothing is processed twice.
    funding.__exit__(None, None, None)
    with TestClient(create_app(funding.settings)) as again:
        marker = new_project()
        publish(funding.settings, "intake", [eligible(marker)])
        consumer = again.app.state.runtime.consumers[0]
        wait_for(lambda: again.get(f"/v1/financing/{marker}", headers=funding.auditor).status_code == 200
                 and len(consumer.lag_by_partition) == 6 and consumer.lag == 0, what="the restarted consumer")
        assert (again.app.state.runtime.app.recorder.max_notification_id() or 0) == before + 1
        assert again.get(f"/v1/financing/{project_id}", headers=funding.auditor).json() == state


def test_a_withdrawn_dossier_gives_its_reservation_back_once(funding):
    envelope_id = ready(funding, amount=1_000_000)
    project_id = proposed(funding, envelope_id, 600_000)
    assert approve(funding, project_id).status_code == 200
    withdrawn = record("intake", "ProjectWithdrawn", project_id, 9, reason="moved on",
                       previous_status="financed")
    publish(funding.settings, "intake", [withdrawn])
    wait_for(lambda: financing(funding, project_id)["financing"] == "ended", what="FinancingEnded")
    envelope = funding.get(f"/v1/envelopes/{envelope_id}", headers=funding.auditor).json()
    assert (envelope["reserved_cents"], envelope["available_cents"]) == (0, 1_000_000)
    before, seen = stored_events(funding), processed(funding)
    publish(funding.settings, "intake", [withdrawn])
    wait_for(lambda: processed(funding) > seen, what="the redelivered record")
    assert stored_events(funding) == before
    funding.app.state.runtime.projector.catch_up()
    ended = funding.get(f"/v1/decisions?project_id={project_id}&kind=FinancingEnded", headers=funding.auditor)
    assert [(d["amount_cents"], d["justification"]) for d in ended.json()["items"]] == [(600_000, "dossier_withdrawn")]


# --- return aid, the ledger -------------------------------------------------------------------------------


def known_person(client) -> str:
    person_id = str(uuid.uuid4())
    publish(client.settings, "intake", [person_known(person_id)])
    wait_for(lambda: client.app.state.runtime.app.find_person(uuid.UUID(person_id)), what="the person known")
    return person_id


def return_aid_envelope(client, year: int = YEAR) -> dict:
    r = client.post("/v1/envelopes", json={"year": year, "amount_cents": 1_000_000, "purpose": "return_aid"},
                    headers=client.approver)
    assert r.status_code == 201, r.text
    return r.json()


def aid_body(person_id: str, **extra) -> dict:
    return {"person_id": person_id, "country": "SN", "residence_status": "regular", "adults": 1, "children": 2,
            "justification": "a family of four returns to Thiès", **extra}


def decide_aid(client, aid_id: str, who=None, decision: str = "approve"):
    return client.post(f"/v1/return-aid/{aid_id}/decision", headers=who or client.approver,
                       json={"decision": decision, "justification": "the household is as declared"})


def test_return_aid_is_proposed_then_granted_by_another_human_from_its_own_envelope(funding):
    ready(funding)
    person_id = known_person(funding)
    refused(funding.post("/v1/return-aid", json=aid_body(person_id), headers=funding.officer), "envelope_open")
    aid_envelope = return_aid_envelope(funding)
    r = funding.post("/v1/return-aid", json=aid_body(person_id), headers=funding.officer)
    assert r.status_code == 201, r.text
    aid = r.json()
    assert aid["amount_cents"] == 65_000 + 50_000 + 2 * 25_000 and aid["status"] == "proposed"
    assert aid["envelope_id"] == aid_envelope["id"] and aid["proposed_by"] == actor(funding.settings, "olga")

    def disbursed() -> int:
        return funding.get(f"/v1/envelopes/{aid_envelope['id']}", headers=funding.auditor).json()["disbursed_cents"]

    assert disbursed() == 0  # nothing paid before the decision
    before = stored_events(funding)
    refused(decide_aid(funding, aid["id"], bearer(funding.settings, "funding_approver", sub="olga")), "four_eyes")
    assert decide_aid(funding, aid["id"], funding.officer).status_code == 403  # an officer does not decide
    assert stored_events(funding) == before
    r = decide_aid(funding, aid["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "granted" and r.json()["decided_by"] == actor(funding.settings, "anna")
    assert disbursed() == 165_000
    assert funding.get(f"/v1/return-aid/{aid['id']}", headers=funding.auditor).json()["status"] == "granted"
    funding.app.state.runtime.projector.catch_up()
    kinds = [d["kind"] for d in funding.get("/v1/decisions", headers=funding.auditor).json()["items"]]
    assert kinds[-2:] == ["ReturnAidProposed", "ReturnAidGranted"]


def test_return_aid_twice_to_one_person_and_to_an_unknown_person_are_refused(funding):
    ready(funding)
    return_aid_envelope(funding)
    person_id = known_person(funding)
    first = funding.post("/v1/return-aid", json=aid_body(person_id), headers=funding.officer).json()
    before = stored_events(funding)
    refused(funding.post("/v1/return-aid", json=aid_body(person_id), headers=funding.officer),
            "return_aid_per_person")  # a pending proposal counts
    assert decide_aid(funding, first["id"]).status_code == 200
    refused(funding.post("/v1/return-aid", json=aid_body(person_id), headers=funding.officer),
            "return_aid_per_person")
    r = funding.post("/v1/return-aid", json=aid_body(str(uuid.uuid4())), headers=funding.officer)
    assert r.status_code == 404 and "person" in r.json()["detail"]
    assert stored_events(funding) == before + 2  # the approval only: the aid granted, the envelope paid


def test_records_intake_merged_count_their_return_aids_together_until_the_merge_is_undone(funding):
    ready(funding)
    return_aid_envelope(funding)
    first, second = known_person(funding), known_person(funding)
    app = funding.app.state.runtime.app
    aid = funding.post("/v1/return-aid", json=aid_body(first), headers=funding.officer).json()
    assert decide_aid(funding, aid["id"]).status_code == 200
    publish(funding.settings, "intake", [persons_merged(first, second, 2), persons_merged(second, first, 2)])
    wait_for(lambda: app.find_person(uuid.UUID(second)).same_as == [first], what="the merge heard")
    before = stored_events(funding)
    refused(funding.post("/v1/return-aid", json=aid_body(second), headers=funding.officer), "return_aid_per_person")
    assert stored_events(funding) == before
    publish(funding.settings, "intake", [persons_merged(first, second, 3, merged=False),
                                         persons_merged(second, first, 3, merged=False)])
    wait_for(lambda: app.find_person(uuid.UUID(second)).same_as == [], what="the merge undone heard")
    assert funding.post("/v1/return-aid", json=aid_body(second), headers=funding.officer).status_code == 201


def test_two_racing_proposals_for_one_person_give_one_aid(funding):
    """Deterministic: B reads the person, A proposes meanwhile in another process, B's save is refused
    by the store (the person's count moved) and B, proposing again, is refused by the rule."""
    ready(funding)
    return_aid_envelope(funding)
    person_id = uuid.UUID(known_person(funding))
    a, b = FundingApplication(funding.settings), FundingApplication(funding.settings)
    attempts = []

    def b_proposes() -> None:
        person, envelope = b.get_person(person_id), b.envelope_for(Purpose.return_aid, YEAR, "SN")
        attempts.append(len(person.return_aids))
        if len(attempts) == 1:
            a.propose_return_aid(person_id, "SN", "regular", 0, 0, "first", YEAR, None, "user:i#olga")
        aid = ReturnAid.propose(b.rules_in_force(), envelope, YEAR, person, "SN", "regular", 0, 0, "second",
                                "user:i#oscar")
        b.save(aid, person)

    try:
        with pytest.raises(RuleViolated) as refused_again:
            retry_on_conflict(b_proposes)
    finally:
        a.close()
        b.close()
    assert refused_again.value.rule == "return_aid_per_person"
    assert attempts == [0, 1]  # read, lost the race, read again


def test_a_named_envelope_of_another_year_is_refused_for_return_aid_and_feasibility_grants(funding):
    ready(funding)
    last_year = return_aid_envelope(funding, YEAR - 1)
    person_id = known_person(funding)
    before = stored_events(funding)
    refused(funding.post("/v1/return-aid", json=aid_body(person_id, envelope_id=last_year["id"]),
                         headers=funding.officer), "envelope_of_the_year")
    business_last_year = funding.post("/v1/envelopes", json={"year": YEAR - 1, "amount_cents": 1_000_000},
                                      headers=funding.approver).json()
    aid_this_year = return_aid_envelope(funding)
    project_id = new_project()
    publish(funding.settings, "intake", [eligible(project_id)])
    wait_for(lambda: financing(funding, project_id), what="the dossier registered")
    before = stored_events(funding)
    for envelope_id, rule in ((business_last_year["id"], "envelope_of_the_year"),
                              (aid_this_year["id"], "envelope_covers_dossier")):
        refused(funding.post("/v1/feasibility-grants", headers=funding.officer,
                             json={"project_id": project_id, "amount_cents": 140_000, "justification": "by hand",
                                   "envelope_id": envelope_id}), rule)
    assert stored_events(funding) == before


def test_a_financing_proposal_names_a_business_creation_envelope_of_the_year(funding):
    ready(funding)
    last_year = funding.post("/v1/envelopes", json={"year": YEAR - 1, "country": "SN", "amount_cents": 1_000_000},
                             headers=funding.approver).json()
    aid_this_year = return_aid_envelope(funding)
    project_id = new_project()
    at_committee(funding, project_id)
    before = stored_events(funding)
    for envelope_id, rule in ((last_year["id"], "envelope_of_the_year"),
                              (aid_this_year["id"], "envelope_covers_dossier")):
        refused(funding.post(f"/v1/financing/{project_id}/proposal", headers=funding.officer,
                             json={"amount_cents": 500_000, "envelope_id": envelope_id, "justification": "x"}), rule)
    assert stored_events(funding) == before
    assert financing(funding, project_id)["financing"] == "requested"


def test_the_ledger_lists_every_decision_and_stands_as_of_a_moment(funding):
    envelope_id = ready(funding)
    first = proposed(funding, envelope_id, 400_000)
    assert approve(funding, first).status_code == 200
    funding.app.state.runtime.projector.catch_up()
    between = datetime.now(timezone.utc)
    time.sleep(0.05)
    second = proposed(funding, envelope_id, 300_000)
    r = funding.post(f"/v1/financing/{second}/decision", headers=funding.approver,
                     json={"decision": "reject", "justification": "no market for it"})
    assert r.status_code == 200 and r.json()["financing"] == "rejected"
    funding.app.state.runtime.projector.catch_up()

    ledger = funding.get("/v1/decisions", headers=funding.auditor).json()["items"]
    kinds = [d["kind"] for d in ledger]
    assert kinds[:2] == ["ProgrammeRulesPublished", "EnvelopeOpened"]
    approved = next(d for d in ledger if d["kind"] == "FinancingApproved")
    assert approved["project_id"] == first and approved["decided_by"] == actor(funding.settings, "anna")
    assert approved["amount_cents"] == 400_000 and approved["envelope_id"] == envelope_id
    assert approved["rule_version"] == "2026.1" and approved["justification"] == "viable, jobs for the village"
    assert approved["details"]["dossier_version"] == 8 and approved["code_version"]

    mine = funding.get(f"/v1/decisions?project_id={second}", headers=funding.auditor).json()["items"]
    assert [d["kind"] for d in mine] == ["FinancingProposed", "FinancingRejected"]
    assert mine[1]["justification"] == "no market for it" and mine[0]["decided_by"] == actor(funding.settings, "olga")

    then = funding.get("/v1/decisions", params={"as_of": between.isoformat()}, headers=funding.auditor).json()
    expected = [d["id"] for d in ledger if datetime.fromisoformat(d["decided_at"]) <= between]
    assert [d["id"] for d in then["items"]] == expected
    assert "FinancingApproved" in [d["kind"] for d in then["items"]]
    assert not [d for d in then["items"] if d["project_id"] == second] and len(expected) < len(ledger)
    page = funding.get("/v1/decisions?limit=2", headers=funding.auditor).json()
    rest = funding.get(f"/v1/decisions?limit=100&cursor={page['next_cursor']}", headers=funding.auditor).json()
    assert [d["id"] for d in page["items"] + rest["items"]] == [d["id"] for d in ledger]
    assert funding.get("/v1/decisions?as_of=2026-01-01T00:00:00", headers=funding.auditor).status_code == 422


# --- bad input, roles -----------------------------------------------------------------------------------------


BAD_INPUT = [
    ("/v1/envelopes", {"year": 2026, "amount_cents": -5}, "approver"),
    ("/v1/envelopes", {"year": 2026, "amount_cents": 100, "country": "Senegal"}, "approver"),
    ("/v1/envelopes", {"year": 2026, "amount_cents": "100"}, "approver"),
    ("/v1/envelopes", {"year": 2026, "amount_cents": 100, "purpose": "holidays"}, "approver"),
    ("/v1/envelopes", {"year": 2026, "amount_cents": 100, "extra": 1}, "approver"),
    ("/v1/rules", {**rules_body("bad"), "countries": {"SN": {**rules_body()["countries"]["SN"],
                                                                "tranche_percentages": [50, 40]}}}, "admin"),
    ("/v1/rules", {**rules_body("bad"), "countries": {}}, "admin"),
    ("/v1/financing/not-a-uuid/proposal", {"amount_cents": 1, "envelope_id": new_project(), "justification": "x"},
     "officer"),
    ("/v1/feasibility-grants", {"project_id": new_project(), "amount_cents": 0, "justification": "x"}, "officer"),
    ("/v1/return-aid", {"person_id": new_project(), "country": "SN", "residence_status": "regular",
                        "adults": -1, "justification": "x"}, "officer"),
    (f"/v1/financing/{new_project()}/decision", {"decision": "maybe", "justification": "x"}, "approver"),
    (f"/v1/financing/{new_project()}/decision", {"decision": "approve", "justification": ""}, "approver"),
    (f"/v1/financing/{new_project()}/tranches", {"amount_cents": 1, "payee": "p"}, "officer"),
    (f"/v1/financing/{new_project()}/tranches/1/evidence", {"items": []}, "officer"),
    (f"/v1/financing/{new_project()}/agreement", {"signed_on": "yesterday"}, "officer"),
]


def test_bad_input_is_a_4xx_problem_and_writes_nothing(funding):
    ready(funding)
    before = stored_events(funding)
    for path, body, who in BAD_INPUT:
        r = funding.post(path, json=body, headers=getattr(funding, who))
        assert r.status_code == 422, (path, body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 422 and r.json()["type"].startswith("https://passerelle.dev/problems/")
    assert stored_events(funding) == before


def test_missing_things_are_404_and_nothing_is_written(funding):
    ready(funding)
    before = stored_events(funding)
    unknown = new_project()
    assert funding.get(f"/v1/financing/{unknown}", headers=funding.auditor).status_code == 404
    assert funding.get(f"/v1/envelopes/{unknown}", headers=funding.auditor).status_code == 404
    r = funding.post(f"/v1/financing/{unknown}/proposal", headers=funding.officer,
                     json={"amount_cents": 1, "envelope_id": unknown, "justification": "x"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert stored_events(funding) == before


def test_an_auditor_reads_everything_and_writes_nothing(funding):
    envelope_id = ready(funding)
    for path, body in (("/v1/rules", rules_body("2099.1")), ("/v1/envelopes", {"year": YEAR, "amount_cents": 1}),
                       (f"/v1/envelopes/{envelope_id}/adjust", {"amount_cents": 1, "reason": "x"}),
                       ("/v1/return-aid", {"person_id": new_project(), "country": "SN",
                                           "residence_status": "regular", "justification": "x"})):
        assert funding.post(path, json=body, headers=funding.auditor).status_code == 403
    for path in ("/v1/rules", "/v1/decisions", f"/v1/envelopes/{envelope_id}", "/v1/envelopes"):
        assert funding.get(path, headers=funding.auditor).status_code == 200
    intake_officer = bearer(funding.settings, "intake_officer")
    assert funding.get("/v1/decisions", headers=intake_officer).status_code == 403


def test_the_same_idempotency_key_replays_the_decision_and_writes_nothing(funding):
    envelope_id = ready(funding)
    project_id = proposed(funding, envelope_id)
    headers = {**funding.approver, "Idempotency-Key": "decide-1"}
    body = {"decision": "approve", "justification": "ok"}
    first = funding.post(f"/v1/financing/{project_id}/decision", json=body, headers=headers)
    before = stored_events(funding)
    again = funding.post(f"/v1/financing/{project_id}/decision", json=body, headers=headers)
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert stored_events(funding) == before
