"""End to end: intake, partners and followup as real processes over real Kafka.

Funding is played by the test: it produces funding's records (the rules, the
approval, the first tranche) on `funding.events` as funding's relay would.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from shared.envelope import CloudEvent, record_from_state
from tests.conftest import bearer, wait_for
from tests.integration.kafka_tools import produce, read_all

pytestmark = pytest.mark.e2e

DOSSIER = {
    "promoter": {"given_name": "Aminata", "family_name": "Koné", "birth_date": "1990-09-17",
                 "phone": "+33 7 00 00 00 01", "residence_status": "regular"},
    "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique à Thiès",
    "description": "", "requested_amount_cents": 500_000, "own_contribution_cents": 90_000, "planned_jobs": 3,
}


def funding_record(name: str, subject: str, aggregate_version: int, sequence: int, **data: Any) -> tuple[bytes, bytes]:
    state = {"timestamp": datetime.now(timezone.utc), "_meta": {"actor": "service:funding"}, **data}
    return subject.encode(), record_from_state("funding", name, 1, subject, aggregate_version, state, sequence)[1]


async def send(bootstrap: str, topic: str, record: tuple[bytes, bytes]) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, key=record[0], value=record[1])
        return sent.partition, sent.offset
    finally:
        await producer.stop()


def tracked(settings: Any, name: str, offset: int) -> bool:
    """The service's consumer has processed the record (its tracking, in the service's store, says so)."""
    with psycopg.connect(host=settings.postgres_host, port=settings.postgres_port, user=settings.postgres_user,
                         password=settings.postgres_password, dbname=settings.database_name) as conn:
        row = conn.execute("SELECT max(notification_id) FROM followup_tracking WHERE application_name = %s",
                           (name,)).fetchone()
    return row[0] is not None and row[0] >= offset


def until(what: str, check: Callable[[], Any], timeout: float = 45.0) -> Any:
    return wait_for(check, what, timeout)


def test_a_paid_dossier_is_followed_and_its_alert_reaches_kafka(start_service, kafka):
    intake, partners, followup = start_service("intake"), start_service("partners"), start_service("followup")
    for service in (intake, partners, followup):
        service.wait_ready()
    staff = bearer(intake.settings, "intake_officer", sub="officer-e2e")
    httpx.post(f"{partners.url}/v1/partners", headers=staff, json={
        "name": "Entreprendre Île-de-France", "kind": "support_structure", "region": "FR-IDF", "countries": [],
        "sectors": [], "capacity": 5}).raise_for_status()
    operator = httpx.post(f"{partners.url}/v1/partners", headers=staff, json={
        "name": "Thiès Conseil", "kind": "local_operator", "countries": ["SN"], "sectors": ["trade"],
        "capacity": 5}).json()["id"]
    project_id = httpx.post(f"{intake.url}/v1/projects", headers=staff, json=DOSSIER).json()["id"]
    url = f"{intake.url}/v1/projects/{project_id}"
    until("assigned", lambda: httpx.get(url, headers=staff).json()["status"] == "assigned")
    for path, body in (("consent", {"purposes": ["funding"], "partners": [operator]}),
                       ("business-plan", {"budget_lines": [{"label": "stock", "amount_cents": 500_000}],
                                          "own_contribution_cents": 90_000, "planned_jobs": 3}),
                       ("feasibility-study", None),
                       ("feasibility-study/conclusion", {"conclusion": "feasible", "summary": "ok"}),
                       ("committee", None)):
        response = httpx.post(f"{url}/{path}", headers=staff, json=body)
        assert response.status_code < 300, f"{path}: {response.text}"

    # Funding's part: the rules, the approval and the first tranche.
    topic = intake.settings.topic("funding.events")
    rules_id = str(uuid.uuid4())
    partition, offset = asyncio.run(send(kafka, topic, funding_record(
        "ProgrammeRulesPublished", rules_id, 1, 0, version="e2e-1", min_planned_jobs=1, return_aid={},
        countries={"SN": {"in_programme": True, "visit_months": [1, 2]}})))
    # The rules come long before any approval, keyed apart from the dossier: let followup take them in.
    until("rules taken in", lambda: tracked(followup.settings, f"{topic}:{partition}", offset))
    officer = bearer(followup.settings, "followup_officer", sub="fiona")
    asyncio.run(produce(kafka, topic, [
        funding_record("FinancingApproved", project_id, 4, 1, amount_cents=500_000, rule_version="e2e-1",
                       approved_by="user:b", proposed_by="user:a", justification="ok", envelope_id=rules_id,
                       dossier_version=9, code_version="t"),
        funding_record("FundsDisbursed", project_id, 7, 2, tranche=1, amount_cents=250_000, payee="Thiès Conseil",
                       payment_reference="VIR-1", envelope_id=rules_id),
    ]))
    followed = until("followed", lambda: (r := httpx.get(f"{followup.url}/v1/followups/{project_id}",
                                                        headers=officer)).status_code == 200 and r.json())
    assert followed["local_operator_id"] == operator and followed["country"] == "SN"
    assert [p["month"] for p in followed["plan"]] == [1, 2]
    # Intake heard followup on Kafka.
    until("in follow-up", lambda: httpx.get(url, headers=staff).json()["status"] == "in_followup")

    partner = bearer(followup.settings, "partner", partner_id=operator)
    today = datetime.now(timezone.utc).date()
    launch = httpx.post(f"{followup.url}/v1/followups/{project_id}/launch", headers=partner, json={
        "launched_on": (today - timedelta(days=70)).isoformat(), "legal_form": "GIE", "registration": "R-1"})
    assert launch.status_code == 200, launch.text
    visit = httpx.post(f"{followup.url}/v1/followups/{project_id}/visits", headers=partner, json={
        "visit_id": "tablet:1", "visited_on": (today - timedelta(days=35)).isoformat(),
        "business_status": "in_difficulty", "jobs": {"paid": 1, "family": 1}, "revenue_band": "under_150"})
    assert visit.status_code == 201, visit.text

    records = asyncio.run(read_all(kafka, followup.settings.topic("followup.events"), 10))
    events = [CloudEvent.parse(r.value) for r in records]
    raised = [e for e in events if e.name == "AlertRaised"]
    assert len(raised) == 1 and raised[0].subject == project_id and raised[0].data["project_id"] == project_id
    assert raised[0].actor.startswith(f"user:{followup.settings.jwt_issuer}#")  # the human, not the partner
    assert next(r for r in records if CloudEvent.parse(r.value).name == "AlertRaised").key.decode() == project_id
