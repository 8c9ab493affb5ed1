"""Intake hears funding on real Kafka: the rules it screens with, the grant, the decision;
redelivered records change nothing. Funding's records are produced here as its relay publishes them."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from services.intake.domain import Conclusion
from services.intake.main import create_app
from tests.conftest import bearer, wait_for
from tests.integration.funding_tools import publish, record, rules_body
from tests.integration.test_intake_api import body

pytestmark = pytest.mark.integration
RULEBOOK = str(uuid.uuid4())


@pytest.fixture
def intake(make_settings):
    settings = make_settings("intake")
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        client.officer = bearer(settings, "intake_officer", sub="ines")
        yield client


def stored_events(client) -> int:
    return client.app.state.runtime.app.recorder.max_notification_id() or 0


def processed(client) -> int:
    return client.app.state.runtime.consumers[0].processed


def at_committee(client) -> str:
    """A dossier taken to the committee through intake's own commands."""
    app = client.app.state.runtime.app
    project_id = uuid.UUID(client.post("/v1/projects", json=body(), headers=client.officer).json()["id"])
    app.record_partners(project_id, "support-1", "operator-1")
    app.record_consent(project_id, ["funding"], [])
    app.record_business_plan(project_id, [{"label": "stock", "amount_cents": 400_000}], 100_000, 2)
    app.request_feasibility_study(project_id)
    app.complete_feasibility_study(project_id, Conclusion.feasible, "a market")
    app.send_to_committee(project_id)
    return str(project_id)


def published_rules(version: str, ceiling: int) -> tuple[bytes, bytes]:
    rules = rules_body(version)
    rules["countries"]["SN"]["startup_ceiling_cents"] = ceiling
    return record("funding", "ProgrammeRulesPublished", RULEBOOK, 2, version=version, countries=rules["countries"],
                  return_aid=rules["return_aid"], min_planned_jobs=1)


def test_published_rules_screen_the_dossiers_submitted_after_them(intake):
    assert intake.get("/v1/rules", headers=intake.officer).json()["version"] == "default-2026.1"
    publish(intake.settings, "funding", [published_rules("2027.1", 400_000)])
    wait_for(lambda: intake.get("/v1/rules", headers=intake.officer).json()["version"] == "2027.1",
             what="the rules adopted")
    r = intake.post("/v1/projects", json=body(), headers=intake.officer).json()  # asks for 5,000 EUR
    detail = intake.get(f"/v1/projects/{r['id']}", headers=intake.officer).json()
    assert detail["eligibility"]["rule_version"] == "2027.1"
    assert detail["eligibility"]["reasons"] == ["over_ceiling: 500000 > 400000 cents"]
    assert intake.get("/v1/rules", headers=intake.officer).json()["ceilings_cents"]["SN"] == 400_000

    # The same publication again (a relay re-publishing after a crash) adopts nothing new.
    before, seen = stored_events(intake), processed(intake)
    publish(intake.settings, "funding", [published_rules("2027.1", 400_000)])
    wait_for(lambda: processed(intake) > seen, what="the redelivered record")
    assert stored_events(intake) == before


def test_the_grant_and_the_decisions_move_the_dossier_once(intake):
    project_id = at_committee(intake)
    grant = record("funding", "FeasibilityGrantAwarded", project_id, 3, amount_cents=140_000,
                   payee="operator:operator-1", envelope_id=str(uuid.uuid4()), rule_version="2026.1",
                   justification="rules in force")
    deferred = record("funding", "FinancingDeferred", project_id, 6, decided_by="user:anna",
                      justification="revoir la trésorerie", rule_version="2026.1")
    publish(intake.settings, "funding", [grant, deferred])

    def detail() -> dict:
        return intake.get(f"/v1/projects/{project_id}", headers=intake.officer).json()

    wait_for(lambda: detail()["status"] == "deferred", what="the dossier deferred")
    assert detail()["feasibility_grant"] == {"outcome": "awarded", "amount_cents": 140_000,
                                             "payee": "operator:operator-1", "reasons": []}
    before, seen = stored_events(intake), processed(intake)
    publish(intake.settings, "funding", [grant, deferred])  # redelivered
    wait_for(lambda: processed(intake) >= seen + 2, what="the redelivered records")
    assert stored_events(intake) == before

    approved = record("funding", "FinancingApproved", project_id, 9, amount_cents=600_000, approved_by="user:anna",
                      proposed_by="user:olga", justification="ok", rule_version="2026.1",
                      envelope_id=str(uuid.uuid4()), dossier_version=12, code_version="test")
    publish(intake.settings, "funding", [approved])
    wait_for(lambda: detail()["status"] == "financed", what="the dossier financed")
    assert detail()["financing"] == {"decision": "approved", "amount_cents": 600_000, "rule_version": "2026.1"}
    types = [t["type"] for t in detail()["timeline"]]
    assert types.count("FinancingDecisionRecorded") == 2 and types.count("FeasibilityGrantRecorded") == 1
    assert [t["actor"] for t in detail()["timeline"] if t["type"] == "FinancingDecisionRecorded"] == [
        "service:intake", "service:intake"]
