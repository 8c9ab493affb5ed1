"""End to end: intake and partners as real processes, choreographed over real Kafka."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from shared.envelope import CloudEvent, verify_record
from tests.conftest import bearer
from tests.contract import validate_record
from tests.integration.kafka_tools import read_all

pytestmark = pytest.mark.e2e

DOSSIER = {
    "promoter": {"given_name": "Moussa", "family_name": "Traoré", "birth_date": "1985-04-12",
                 "phone": "+33 7 00 00 00 00", "residence_status": "regular"},
    "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Quincaillerie à Thiès",
    "description": "", "requested_amount_cents": 650_000, "own_contribution_cents": 150_000, "planned_jobs": 3,
}
EXTENSIONS = ("sequence", "aggregateversion", "actor", "correlationid", "causationid", "leafhash")


def test_a_dossier_comes_back_assigned_through_kafka_with_one_trace(start_service, kafka):
    intake = start_service("intake")
    partners = start_service("partners")
    intake.wait_ready()
    partners.wait_ready()
    staff = bearer(intake.settings, "intake_officer", sub="officer-e2e")

    support = httpx.post(f"{partners.url}/v1/partners", headers=staff, json={
        "name": "Association Île-de-France Entreprendre", "kind": "support_structure", "region": "FR-IDF",
        "countries": [], "sectors": [], "capacity": 20}).json()
    operator = httpx.post(f"{partners.url}/v1/partners", headers=staff, json={
        "name": "Bureau d'études Thiès Conseil", "kind": "local_operator", "countries": ["SN"],
        "sectors": ["trade"], "capacity": 20}).json()

    response = httpx.post(f"{intake.url}/v1/projects", headers=staff, json=DOSSIER)
    assert response.status_code == 201, response.text
    project_id = response.json()["id"]

    deadline = time.monotonic() + 30
    while True:
        detail = httpx.get(f"{intake.url}/v1/projects/{project_id}", headers=staff).json()
        if detail["status"] == "assigned":
            break
        assert time.monotonic() < deadline, f"not assigned in time: {detail['status']}\n{partners.log.read_text()[-2000:]}"
        time.sleep(0.1)
    assert detail["support_structure_id"] == support["id"]
    assert detail["local_operator_id"] == operator["id"]
    assignment = httpx.get(f"{partners.url}/v1/assignments/{project_id}", headers=staff).json()
    assert assignment["support_structure_id"] == support["id"]

    # Every record of intake.events, read by a plain Kafka consumer, is a valid CloudEvent.
    records = asyncio.run(read_all(kafka, intake.settings.topic("intake.events"), 5))
    types = set()
    for record in records:
        headers = dict(record.headers)
        assert headers["content-type"] == b"application/cloudevents+json"
        assert headers["traceparent"].startswith(b"00-")
        raw = json.loads(record.value)
        for attribute in ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", *EXTENSIONS):
            assert attribute in raw, attribute
        event = CloudEvent.parse(record.value)
        assert event.specversion == "1.0" and event.source == "/passerelle/intake"
        assert event.type.startswith("passerelle.intake.") and event.type.endswith(".v1")
        assert record.key.decode() == event.subject
        assert verify_record(record.value)
        types.add(event.name)
    assert {"ProjectSubmitted", "EligibilityAssessed", "PartnersRecorded"} <= types
    assert sorted(CloudEvent.parse(r.value).sequence for r in records) == list(range(len(records)))
    recorded = next(CloudEvent.parse(r.value) for r in records if CloudEvent.parse(r.value).name == "PartnersRecorded")
    assert recorded.actor == "service:intake" and recorded.correlationid == project_id

    # Every record of both topics is valid against its schema in asyncapi.yaml.
    published = records + asyncio.run(read_all(kafka, partners.settings.topic("partners.events"), 3))
    validated = {validate_record(r.value) for r in published}
    assert {"passerelle.partners.PartnersAssigned.v1", "passerelle.intake.ProjectSubmitted.v1"} <= validated

    # The HTTP span of the submission and the partners consumer's span share one trace.
    time.sleep(1)
    intake_spans = [json.loads(line) for line in intake.spans.read_text().splitlines()]
    partners_spans = [json.loads(line) for line in partners.spans.read_text().splitlines()]
    http = [s for s in intake_spans if s["kind"] == "SERVER" and s["name"] == "POST /v1/projects"]
    assert http, [s["name"] for s in intake_spans]
    trace_id = http[0]["trace_id"]
    consumer = [s for s in partners_spans if s["kind"] == "CONSUMER" and s["trace_id"] == trace_id]
    assert consumer, "the partners consumer span must be in the trace of the HTTP request"
    publish = [s for s in intake_spans if s["kind"] == "PRODUCER" and trace_id in s["links"]]
    assert publish, "the relay's publish span links to the request that caused the events"


def test_api_processes_apart_from_the_worker_still_see_dossiers_assigned(start_service, kafka):
    """Production shape: intake's HTTP in its own process, its relay and consumer in a worker."""
    worker = start_service("intake", role="worker")
    api = start_service("intake", role="api", like=worker)
    partners = start_service("partners")
    for service in (worker, api, partners):
        service.wait_ready()
    staff = bearer(api.settings, "intake_officer", sub="officer-e2e")
    for body in ({"name": "Structure IDF", "kind": "support_structure", "region": "FR-IDF", "countries": [],
                  "sectors": [], "capacity": 5},
                 {"name": "Opérateur Dakar", "kind": "local_operator", "countries": ["SN"], "sectors": [],
                  "capacity": 5}):
        assert httpx.post(f"{partners.url}/v1/partners", headers=staff, json=body).status_code == 201
    project_id = httpx.post(f"{api.url}/v1/projects", headers=staff, json=DOSSIER).json()["id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{api.url}/v1/projects/{project_id}", headers=staff).json()["status"] != "assigned":
        assert time.monotonic() < deadline, worker.log.read_text()[-2000:]
        time.sleep(0.1)
    # The worker's projector, woken by the store's NOTIFY, keeps the list the API serves.
    deadline = time.monotonic() + 10
    while not [p for p in httpx.get(f"{api.url}/v1/projects?status=assigned", headers=staff).json()["items"]
               if p["id"] == project_id]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
