"""End to end: a partner's feed fed by the real relays, as a partner's client reads it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import bearer
from tests.e2e.test_dossier_flow import DOSSIER

pytestmark = pytest.mark.e2e


async def read_committed(bootstrap: str, topic: str, until: set[str], timeout: float = 60.0) -> list[dict]:
    """The partner's view: read_committed from the start, until every type in `until` came."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"partner-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                metadata_max_age_ms=1000)
    await consumer.start()
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until <= {e["type"].split(".")[2] for e in events}:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                events += [json.loads(r.value) for r in batch]
    finally:
        await consumer.stop()
    return events


def test_an_enabled_partner_reads_its_dossier_from_its_assignment_on(start_service, kafka):
    intake = start_service("intake")
    partners = start_service("partners")
    intake.wait_ready()
    partners.wait_ready()
    staff = bearer(intake.settings, "intake_officer", sub="officer-e2e")
    support = httpx.post(f"{partners.url}/v1/partners", headers=staff, json={
        "name": "Association Île-de-France Entreprendre", "kind": "support_structure", "region": "FR-IDF",
        "countries": [], "sectors": [], "capacity": 20}).json()
    httpx.post(f"{partners.url}/v1/partners", headers=staff, json={
        "name": "Bureau d'études Thiès Conseil", "kind": "local_operator", "countries": ["SN"],
        "sectors": ["trade"], "capacity": 20}).raise_for_status()
    enabled = httpx.post(f"{partners.url}/v1/partners/{support['id']}/feed", headers=staff)
    assert enabled.status_code == 200 and enabled.json()["feed_enabled"], enabled.text

    project_id = httpx.post(f"{intake.url}/v1/projects", headers=staff, json=DOSSIER).json()["id"]

    topic = partners.settings.topic(f"partner.{support['id']}.events")
    events = asyncio.run(read_committed(kafka, topic, {"AssignmentRequested", "PartnersAssigned",
                                                       "PartnersRecorded"}))
    names = [e["type"].split(".")[2] for e in events]
    # From the assignment on: intake's submission and eligibility came before it.
    assert sorted(names) == ["AssignmentRequested", "PartnersAssigned", "PartnersRecorded"], names
    assert names.index("AssignmentRequested") < names.index("PartnersAssigned")
    assert {e["projectid"] for e in events} == {project_id}
    recorded = next(e for e in events if e["type"].endswith("PartnersRecorded.v1"))
    assert recorded["data"]["support_structure_id"] == support["id"]
    assert recorded["origin"] == "/passerelle/intake"
    text = json.dumps(events, ensure_ascii=False)
    for personal in ("Moussa", "Traoré", "+33 7", "1985-04-12", "Quincaillerie", "officer-e2e"):
        assert personal not in text
