"""The whole flow across intake, partners and funding, choreographed over real Kafka:
published rules screen the dossier, partners assign it, funding awards the feasibility grant,
the committee finances it with four eyes, tranches are paid and reconciled."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from services.funding.main import create_app as create_funding
from services.intake.main import create_app as create_intake
from services.partners.main import create_app as create_partners
from tests.conftest import bearer, wait_for
from tests.integration.funding_tools import rules_body

pytestmark = pytest.mark.integration
YEAR = datetime.now(timezone.utc).year


def dossier(family_name: str, amount: int) -> dict:
    return {"promoter": {"given_name": "Awa", "family_name": family_name, "birth_date": "1988-03-14",
                         "phone": "+33 6 11 22 33 44", "residence_status": "regular"},
            "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique à Thiès",
            "description": "", "requested_amount_cents": amount, "own_contribution_cents": 120_000,
            "planned_jobs": 3}


def test_a_dossier_goes_from_submission_to_financed_disbursed_and_reconciled(make_settings):
    intake_settings, partners_settings, funding_settings = (make_settings(s) for s in ("intake", "partners", "funding"))
    with TestClient(create_intake(intake_settings)) as intake, TestClient(create_partners(partners_settings)) as partners, \
            TestClient(create_funding(funding_settings)) as funding:
        officer = bearer(intake_settings, "intake_officer", sub="ines")
        admin = bearer(funding_settings, "admin", sub="root")
        funding_officer = bearer(funding_settings, "funding_officer", sub="olga")
        approver = bearer(funding_settings, "funding_approver", sub="anna")
        auditor = bearer(funding_settings, "auditor", sub="audrey")

        def project(project_id: str) -> dict:
            return intake.get(f"/v1/projects/{project_id}", headers=officer).json()

        # Before funding publishes anything, intake screens with its default rules: 7,500 EUR is over the ceiling.
        early = intake.post("/v1/projects", json=dossier("Sarr", 750_000), headers=officer).json()
        assert project(early["id"])["eligibility"]["rule_version"] == "default-2026.1"
        assert early["status"] == "ineligible"

        # Funding publishes rules raising Senegal's ceiling; intake adopts them for the dossiers submitted next.
        rules = rules_body("flow-1")
        rules["countries"]["SN"]["startup_ceiling_cents"] = 800_000
        assert funding.post("/v1/rules", json=rules, headers=admin).status_code == 201
        wait_for(lambda: intake.get("/v1/rules", headers=officer).json()["version"] == "flow-1",
                 what="intake to adopt the rules")
        envelope = funding.post("/v1/envelopes", json={"year": YEAR, "country": "SN", "amount_cents": 5_000_000},
                                headers=approver).json()

        support = partners.post("/v1/partners", headers=officer, json={
            "name": "Île-de-France Entreprendre", "kind": "support_structure", "region": "FR-IDF", "countries": [],
            "sectors": [], "capacity": 10}).json()
        operator = partners.post("/v1/partners", headers=officer, json={
            "name": "Thiès Conseil", "kind": "local_operator", "countries": ["SN"], "sectors": ["trade"],
            "capacity": 10}).json()

        created = intake.post("/v1/projects", json=dossier("Diop", 750_000), headers=officer)
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        assert project(project_id)["eligibility"] == {"eligible": True, "reasons": [], "rule_version": "flow-1"}
        assert project(early["id"])["eligibility"]["rule_version"] == "default-2026.1"  # never re-screened
        wait_for(lambda: project(project_id)["status"] == "assigned", what="the assignment")
        assert project(project_id)["local_operator_id"] == operator["id"]
        assert project(project_id)["support_structure_id"] == support["id"]

        # Preparation, then the feasibility study: funding awards its grant, intake shows it.
        for path, body in (("consent", {"purposes": ["funding", "follow_up"], "partners": [operator["id"]]}),
                           ("business-plan", {"budget_lines": [{"label": "stock", "amount_cents": 600_000},
                                                               {"label": "shelves", "amount_cents": 150_000}],
                                              "own_contribution_cents": 120_000, "planned_jobs": 3}),
                           ("feasibility-study", None)):
            r = intake.post(f"/v1/projects/{project_id}/{path}", json=body, headers=officer)
            assert r.status_code == 200, r.text
        grant = wait_for(lambda: project(project_id)["feasibility_grant"], what="the feasibility grant in intake")
        assert grant == {"outcome": "awarded", "amount_cents": 140_000, "payee": f"operator:{operator['id']}",
                         "reasons": []}
        operator_token = bearer(intake_settings, "partner", partner_id=operator["id"])
        assert intake.post(f"/v1/projects/{project_id}/feasibility-study/conclusion", headers=operator_token,
                           json={"conclusion": "feasible", "summary": "a market"}).status_code == 200
        assert intake.post(f"/v1/projects/{project_id}/committee", headers=officer).status_code == 200

        # The committee: one officer proposes, another person approves.
        def financing() -> dict:
            r = funding.get(f"/v1/financing/{project_id}", headers=auditor)
            return r.json() if r.status_code == 200 else {}

        wait_for(lambda: financing().get("financing") == "requested", what="FinancingRequested")
        proposal = {"amount_cents": 750_000, "envelope_id": envelope["id"], "justification": "a sound shop"}
        assert funding.post(f"/v1/financing/{project_id}/proposal", json=proposal,
                            headers=funding_officer).status_code == 200
        decision = {"decision": "approve", "justification": "viable, three jobs"}
        assert funding.post(f"/v1/financing/{project_id}/decision", json=decision,
                            headers=bearer(funding_settings, "funding_approver", sub="olga")).status_code == 409
        approved = funding.post(f"/v1/financing/{project_id}/decision", json=decision, headers=approver).json()
        sent_version = next(t["version"] for t in project(project_id)["timeline"]
                            if t["type"] == "ProjectSentToCommittee")
        assert approved["approval"]["dossier_version"] == sent_version
        assert approved["approval"]["rule_version"] == "flow-1"
        wait_for(lambda: project(project_id)["status"] == "financed", what="the dossier financed in intake")
        assert project(project_id)["financing"] == {"decision": "approved", "amount_cents": 750_000,
                                                    "rule_version": "flow-1"}

        # The agreement, then the tranches: each reconciled before the next goes out.
        signed = funding.post(f"/v1/financing/{project_id}/agreement", json={"signed_on": "2026-06-01"},
                              headers=funding_officer).json()
        tranches = [t["amount_cents"] for t in signed["tranches"]]
        assert tranches == [375_000, 225_000, 150_000]
        for n, amount in enumerate(tranches, start=1):
            paid = funding.post(f"/v1/financing/{project_id}/tranches", headers=funding_officer, json={
                "amount_cents": amount, "payee": f"operator:{operator['id']}", "payment_reference": f"VIR-{n}"})
            assert paid.status_code == 200, paid.text
            evidence = funding.post(f"/v1/financing/{project_id}/tranches/{n}/evidence", headers=funding_officer,
                                    json={"items": [{"label": f"invoices {n}", "amount_cents": amount}]})
            assert evidence.status_code == 200
            assert funding.post(f"/v1/financing/{project_id}/tranches/{n}/reconciliation",
                                headers=funding_officer).status_code == 200

        final = financing()
        assert all(t["disbursed"] and t["reconciled"] for t in final["tranches"])
        totals = funding.get(f"/v1/envelopes/{envelope['id']}", headers=auditor).json()
        assert totals["reserved_cents"] == 0
        assert totals["disbursed_cents"] == 750_000 + 140_000 + 120_000  # grant, feasibility grant, operator fees
        funding.app.state.runtime.projector.catch_up()
        kinds = [d["kind"] for d in funding.get(f"/v1/decisions?project_id={project_id}", headers=auditor)
                 .json()["items"]]
        assert kinds == ["FeasibilityGrantAwarded", "FinancingProposed", "FinancingApproved", "AgreementSigned",
                         "OperatorFeesCommitted"] + ["FundsDisbursed", "TrancheReconciled"] * 3
        intake.app.state.runtime.projector.catch_up()
        listed = intake.get("/v1/projects?status=financed", headers=officer).json()["items"]
        assert [(p["id"], p["feasibility_grant"], p["financed_amount_cents"]) for p in listed] == [
            (project_id, "awarded", 750_000)]
