"""End to end: funding as real processes (its HTTP API apart from its worker, as in production)
with intake and partners, choreographed over real Kafka, from published rules to a financed dossier."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

import httpx
import pytest

from services.funding.application import example_rules
from tests.conftest import actor, bearer, wait_for

pytestmark = pytest.mark.e2e


wait_until = functools.partial(wait_for, timeout=60.0)  # processes start slower than in-process apps


def test_rules_grant_committee_approval_tranches_and_follow_up_across_processes(start_service):
    intake = start_service("intake")
    partners = start_service("partners")
    worker = start_service("funding", role="worker")
    funding = start_service("funding", role="api", like=worker)
    followup = start_service("followup")
    for service in (intake, partners, worker, funding, followup):
        service.wait_ready()
    # All services of a test share one topic prefix and key directory (make_settings).
    staff = bearer(intake.settings, "intake_officer", sub="ines")
    admin, officer = bearer(funding.settings, "admin", sub="root"), bearer(funding.settings, "funding_officer", sub="olga")
    approver = bearer(funding.settings, "funding_approver", sub="anna")

    rules = example_rules()
    assert httpx.post(f"{funding.url}/v1/rules", json=rules, headers=admin).status_code == 201
    wait_until(lambda: httpx.get(f"{intake.url}/v1/rules", headers=staff).json()["version"] == rules["version"],
               "intake to adopt the rules")
    envelope = httpx.post(f"{funding.url}/v1/envelopes", headers=approver, json={
        "year": datetime.now(timezone.utc).year, "country": "SN", "amount_cents": 2_000_000}).json()
    for body in ({"name": "Structure IDF", "kind": "support_structure", "region": "FR-IDF", "countries": [],
                  "sectors": [], "capacity": 5},
                 {"name": "Opérateur Thiès", "kind": "local_operator", "countries": ["SN"], "sectors": [],
                  "capacity": 5}):
        assert httpx.post(f"{partners.url}/v1/partners", headers=staff, json=body).status_code == 201

    project_id = httpx.post(f"{intake.url}/v1/projects", headers=staff, json={
        "promoter": {"given_name": "Awa", "family_name": "Ndiaye", "birth_date": "1990-05-05",
                     "phone": "+33 6 00 00 00 01", "residence_status": "regular"},
        "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique", "description": "",
        "requested_amount_cents": 600_000, "own_contribution_cents": 100_000, "planned_jobs": 2}).json()["id"]

    def dossier() -> dict:
        return httpx.get(f"{intake.url}/v1/projects/{project_id}", headers=staff).json()

    assert dossier()["eligibility"]["rule_version"] == rules["version"]
    wait_until(lambda: dossier()["status"] == "assigned", "the assignment")
    for path, body in (("consent", {"purposes": ["funding"], "partners": []}),
                       ("business-plan", {"budget_lines": [{"label": "stock", "amount_cents": 600_000}],
                                          "own_contribution_cents": 100_000, "planned_jobs": 2}),
                       ("feasibility-study", None),
                       ("feasibility-study/conclusion", {"conclusion": "feasible", "summary": "ok"})):
        r = httpx.post(f"{intake.url}/v1/projects/{project_id}/{path}", json=body, headers=staff)
        assert r.status_code == 200, r.text
    wait_until(lambda: (dossier()["feasibility_grant"] or {}).get("outcome") == "awarded", "the feasibility grant")
    assert httpx.post(f"{intake.url}/v1/projects/{project_id}/committee", headers=staff).status_code == 200

    def financing() -> dict:
        r = httpx.get(f"{funding.url}/v1/financing/{project_id}", headers=officer)
        return r.json() if r.status_code == 200 else {}

    wait_until(lambda: financing().get("financing") == "requested", "FinancingRequested in funding's worker")
    assert httpx.post(f"{funding.url}/v1/financing/{project_id}/proposal", headers=officer, json={
        "amount_cents": 600_000, "envelope_id": envelope["id"], "justification": "sound"}).status_code == 200
    approved = httpx.post(f"{funding.url}/v1/financing/{project_id}/decision", headers=approver,
                          json={"decision": "approve", "justification": "viable"})
    assert approved.status_code == 200, approved.text
    wait_until(lambda: dossier()["status"] == "financed", "the dossier financed in intake")
    # The worker's projector keeps the ledger the API serves.
    wait_until(lambda: [d for d in httpx.get(f"{funding.url}/v1/decisions?project_id={project_id}",
                                             headers=officer).json()["items"] if d["kind"] == "FinancingApproved"],
               "the approval in the ledger")

    the_first_tranche_opens_the_follow_up_and_an_alert_holds_the_next(intake, funding, followup, project_id)
    check_the_auditors_ledger(funding, project_id, envelope["id"], [intake, partners, funding, followup])
    every_record_keeps_the_contract(funding.settings)


def every_record_keeps_the_contract(settings) -> None:
    """Every record the four services published in this flow is valid against asyncapi.yaml."""
    import asyncio

    from tests.contract import validate_record
    from tests.integration.kafka_tools import read_all

    seen = set()
    for service in ("intake", "partners", "funding", "followup"):
        for record in asyncio.run(read_all(settings.kafka_bootstrap_servers, settings.topic(f"{service}.events"), 1)):
            seen.add(validate_record(record.value))
    for expected in ("passerelle.funding.FinancingApproved.v1", "passerelle.funding.FundsDisbursed.v1",
                     "passerelle.followup.FollowUpOpened.v1", "passerelle.followup.AlertRaised.v1",
                     "passerelle.intake.FinancingDecisionRecorded.v1", "passerelle.partners.PartnersAssigned.v1"):
        assert expected in seen, (expected, sorted(seen))


def the_first_tranche_opens_the_follow_up_and_an_alert_holds_the_next(intake, funding, followup,
                                                                       project_id: str) -> None:
    """Funding and followup over Kafka: FundsDisbursed opens the plan; a visit finding the business in
    difficulty raises an alert that suspends the next tranche until a later visit resolves it."""
    from datetime import timedelta

    officer = bearer(funding.settings, "funding_officer", sub="olga")
    field = bearer(followup.settings, "followup_officer", sub="fatou")
    staff = bearer(intake.settings, "intake_officer", sub="ines")
    base = f"{funding.url}/v1/financing/{project_id}"

    def financing() -> dict:
        return httpx.get(base, headers=officer).json()

    signed = httpx.post(f"{base}/agreement", headers=officer, json={"signed_on": "2026-06-01"})
    assert signed.status_code == 200, signed.text
    first, second = [t["amount_cents"] for t in signed.json()["tranches"]][:2]
    paid = httpx.post(f"{base}/tranches", headers=officer, json={
        "amount_cents": first, "payee": "operator:thies", "payment_reference": "VIR-1"})
    assert paid.status_code == 200, paid.text

    followed = wait_until(lambda: (r := httpx.get(f"{followup.url}/v1/followups/{project_id}", headers=field)
                                   ).status_code == 200 and r.json(), "the follow-up opened by the first tranche")
    assert followed["plan"], followed
    wait_until(lambda: httpx.get(f"{intake.url}/v1/projects/{project_id}", headers=staff).json()["status"]
               == "in_followup", "intake to show the dossier in follow-up")
    today = datetime.now(timezone.utc).date()
    launched = httpx.post(f"{followup.url}/v1/followups/{project_id}/launch", headers=field, json={
        "launched_on": (today - timedelta(days=40)).isoformat(), "legal_form": "GIE", "registration": "RC-1",
        "initial_jobs": 1})
    assert launched.status_code == 200, launched.text

    def visit(visit_id: str, days_ago: int, status: str) -> None:
        r = httpx.post(f"{followup.url}/v1/followups/{project_id}/visits", headers=field, json={
            "visit_id": visit_id, "visited_on": (today - timedelta(days=days_ago)).isoformat(),
            "business_status": status, "jobs": {"paid": 1, "family": 1}, "revenue_band": "under_150",
            "observations": "visite", "recommendations": ""})
        assert r.status_code == 201, r.text

    visit("field:1", 8, "in_difficulty")
    wait_until(lambda: financing()["suspended"], "funding to suspend the tranches on the alert")
    for step in ("evidence", "reconciliation"):
        body = {"items": [{"label": "factures", "amount_cents": first}]} if step == "evidence" else None
        assert httpx.post(f"{base}/tranches/1/{step}", headers=officer, json=body).status_code == 200
    held = httpx.post(f"{base}/tranches", headers=officer, json={
        "amount_cents": second, "payee": "operator:thies", "payment_reference": "VIR-2"})
    assert held.status_code == 409 and held.json()["rule"] == "disbursement_not_suspended", held.text

    visit("field:2", 1, "active")
    wait_until(lambda: not financing()["suspended"], "funding to resume once the alert is resolved")
    paid = httpx.post(f"{base}/tranches", headers=officer, json={
        "amount_cents": second, "payee": "operator:thies", "payment_reference": "VIR-2"})
    assert paid.status_code == 200, paid.text


def check_the_auditors_ledger(funding, project_id: str, envelope_id: str, services: list) -> None:
    """The audit rebuilds the ledger from Kafka alone, trusting only the public keys the services
    serve (GET /v1/keys): it matches funding's own, as of any time, and a decision missing from
    funding's ledger is reported."""
    import asyncio
    import os
    from datetime import timedelta

    import psycopg

    from services.audit.api import funding_envelopes, funding_ledger
    from services.audit.application import AuditApplication
    from services.audit.consumers import Replay
    from tests.conftest import POSTGRES

    served = [httpx.get(f"{service.url}/v1/keys").json() for service in services]
    verifier_keys = [key["verifier_key"] for answer in served for key in answer["keys"]]
    assert [answer["checkpoint_origin"] for answer in served] == [f"passerelle/{s.settings.service}" for s in services]
    settings = funding.settings.model_copy(update={"service": "audit", "audit_verifier_keys": ",".join(verifier_keys)})
    auditor = AuditApplication(settings)
    assert sorted(auditor.keys) == sorted(answer["checkpoint_origin"] for answer in served)
    asyncio.run(Replay(auditor, settings).replay_once())
    report = auditor.verification()
    assert report["ok"], [p for s in report["services"].values() for p in s["problems"]]
    assert report["services"]["funding"]["problems"] == []
    assert all(log["verified_checkpoint"] for log in report["services"].values()), report  # signed, checked
    os.environ["PASSERELLE_FUNDING_URL"] = funding.url
    try:
        rebuilt = auditor.ledger_as_of(None)
        kinds = [d["kind"] for d in rebuilt["decisions"] if d["project_id"] == project_id]
        assert {"FinancingProposed", "FinancingApproved", "FeasibilityGrantAwarded"} <= set(kinds), kinds
        approval = next(d for d in rebuilt["decisions"] if d["kind"] == "FinancingApproved")
        assert approval["decided_by"] == actor(settings, "anna") and approval["envelope_id"] == envelope_id
        envelope = next(e for e in rebuilt["envelopes"] if e["id"] == envelope_id)
        kept = httpx.get(f"{funding.url}/v1/envelopes/{envelope_id}", headers=bearer(settings, "auditor")).json()
        assert envelope["disbursed_cents"] > 0 and envelope["reserved_cents"] > 0  # two tranches paid, one to go
        for total in ("allocated_cents", "reserved_cents", "disbursed_cents", "available_cents"):
            assert envelope[total] == kept[total], (total, envelope, kept)
        token = bearer(settings, "auditor")["Authorization"]
        comparison = auditor.compare_ledger(rebuilt, asyncio.run(funding_ledger(token, None)),
                                            asyncio.run(funding_envelopes(token)))
        assert comparison["matches"] and comparison["envelopes"]["matches"], comparison

        before = datetime.fromisoformat(approval["decided_at"].replace("Z", "+00:00")) - timedelta(microseconds=1)
        then = auditor.ledger_as_of(before)
        assert "FinancingApproved" not in [d["kind"] for d in then["decisions"]]
        assert auditor.compare_ledger(then, asyncio.run(funding_ledger(token, before)))["matches"]

        ask_the_audit_api_for_the_ledger(settings, rebuilt, before)

        # The auditor's command line exports the same ledger, as CSV and JSON.
        export_the_ledger(funding, approval)

        # A decision that disappears from funding's own ledger, and an envelope whose totals funding
        # changed behind the events' back, are named.
        with psycopg.connect(dbname=funding.settings.database_name, autocommit=True, **POSTGRES) as conn:
            conn.execute("DELETE FROM decisions_v1 WHERE id = %s", (approval["id"],))
            conn.execute("UPDATE envelopes_v1 SET disbursed_cents = disbursed_cents + 1 WHERE id = %s", (envelope_id,))
        comparison = auditor.compare_ledger(rebuilt, asyncio.run(funding_ledger(token, None)),
                                            asyncio.run(funding_envelopes(token)))
        assert not comparison["matches"] and comparison["only_on_kafka"] == [approval["id"]]
        assert [e["id"] for e in comparison["envelopes"]["differing"]] == [envelope_id]
        assert set(comparison["envelopes"]["differing"][0]["totals"]) == {"disbursed_cents", "available_cents"}
    finally:
        os.environ.pop("PASSERELLE_FUNDING_URL", None)


def ask_the_audit_api_for_the_ledger(settings, rebuilt: dict, before: datetime) -> None:
    """GET /v1/ledger of the audit service: the same ledger, compared with funding's, which the
    audit asks with the auditor's own token."""
    from fastapi.testclient import TestClient

    from services.audit.main import create_app

    auditor = bearer(settings, "auditor")
    with TestClient(create_app(settings.model_copy(update={"port": 0}))) as client:
        deadline = time.monotonic() + 60
        while (r := client.get("/v1/ledger", params={"compare": "false"}, headers=auditor)).json()["decisions"] \
                != rebuilt["decisions"]:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        body = client.get("/v1/ledger", headers=auditor).json()
        assert body["comparison"]["matches"] and body["comparison"]["envelopes"]["matches"], body["comparison"]
        assert body["envelopes"] == rebuilt["envelopes"]
        then = client.get("/v1/ledger", params={"as_of": before.isoformat()}, headers=auditor).json()
        assert then["comparison"]["matches"] and then["comparison"]["envelopes"] is None  # totals: as of now only
        r = client.get("/v1/ledger", params={"as_of": "2026-03-01T12:00:00"}, headers=auditor)  # no zone
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
        assert client.get("/v1/ledger", headers=bearer(settings, "intake_officer")).status_code == 403


def export_the_ledger(funding, approval: dict) -> None:
    import csv
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp())
    env = {**os.environ, "PASSERELLE_DATA_DIR": str(funding.settings.data_dir),
           "PASSERELLE_KEYS_DIR": str(funding.settings.keys_dir),
           "PASSERELLE_TOPIC_PREFIX": funding.settings.topic_prefix,
           "KAFKA_BOOTSTRAP_SERVERS": funding.settings.kafka_bootstrap_servers}
    now = subprocess.run([sys.executable, "-m", "services.audit.cli", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert now.returncode == 0, now.stdout + now.stderr  # every log verifies
    rows = list(csv.DictReader(open(out / "ledger.csv")))
    assert approval["id"] in [r["id"] for r in rows]
    assert next(r for r in rows if r["id"] == approval["id"])["decided_by"] == actor(funding.settings, "anna")
    assert json.loads((out / "ledger.json").read_text())["envelopes"]
    long_ago = subprocess.run([sys.executable, "-m", "services.audit.cli", "--out", str(out), "--as-of", "2020-01-01"],
                              env=env, capture_output=True, text=True, timeout=120)
    assert long_ago.returncode == 0, long_ago.stdout + long_ago.stderr
    assert list(csv.DictReader(open(out / "ledger.csv"))) == []
