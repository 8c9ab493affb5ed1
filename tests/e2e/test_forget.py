"""Forget (crypto-shredding), end to end: once a person's key is deleted, none of their personal
data can be read anywhere (stores, topics, dead-letter topics, read models, logs, spans), while the
amounts, the decisions and the verification of every log stay whole; a forgotten person who comes
back is a new person record, which can be forgotten too."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from tests.conftest import POSTGRES, bearer
from tests.contract import validate_record

pytestmark = pytest.mark.e2e


def personal_data(marker: str) -> dict[str, str]:
    day = int(marker, 16) % 28 + 1  # a birth date that appears nowhere else
    return {"given_name": f"Aminata{marker}", "family_name": f"Sow{marker}", "birth_date": f"1979-11-{day:02d}",
            "phone": f"+33 6 {int(marker, 16) % 10**8:08d}", "email": f"aminata.{marker}@example.org",
            "residence_status": "regular"}


def everything_in_the_databases(databases: list[str]) -> str:
    """Every row of every table of the services' databases, as text (bytea columns as their bytes)."""
    found = []
    for database in databases:
        with psycopg.connect(dbname=database, autocommit=True, **POSTGRES) as conn:
            columns = conn.execute(
                "SELECT quote_ident(table_name), quote_ident(column_name), data_type FROM information_schema.columns"
                " WHERE table_schema = 'public'").fetchall()
            for table in sorted({t for t, _, _ in columns}):
                found += [row for (row,) in conn.execute(f"SELECT t::text FROM {table} t")]
            for table, column, kind in columns:
                if kind == "bytea":  # printable bytes as they are, the others escaped
                    found += [row or "" for (row,) in conn.execute(f"SELECT encode({column}, 'escape') FROM {table}")]
    return "\n".join(found)


async def everything_on_kafka(bootstrap: str, prefix: str) -> list[bytes]:
    """Every record (values and headers) of every topic of this test, dead-letter topics included."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list[bytes] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    found.append(r.value or b"")
                    found.extend(v for _, v in r.headers or ())
    finally:
        await consumer.stop()
    return found


def test_a_forgotten_person_can_be_read_nowhere_and_every_log_still_verifies(start_service, kafka, tmp_path):
    intake = start_service("intake")
    partners = start_service("partners")
    intake.wait_ready()
    partners.wait_ready()
    staff = bearer(intake.settings, "intake_officer", sub="officer-forget")
    admin = bearer(intake.settings, "admin", sub="dpo")
    for partner in ({"name": "Réseau Entreprendre Paris", "kind": "support_structure", "region": "FR-IDF",
                     "countries": [], "sectors": [], "capacity": 5},
                    {"name": "Dakar Conseil", "kind": "local_operator", "countries": ["SN"], "sectors": [],
                     "capacity": 5}):
        assert httpx.post(f"{partners.url}/v1/partners", headers=staff, json=partner).status_code == 201

    marker = uuid.uuid4().hex[:10]
    promoter = personal_data(marker)
    dossier = {"promoter": promoter, "country": "SN", "french_region": "FR-IDF", "sector": "trade",
               "title": "Atelier de couture", "description": "", "requested_amount_cents": 480_000,
               "own_contribution_cents": 90_000, "planned_jobs": 2}
    created = httpx.post(f"{intake.url}/v1/projects", headers=staff, json=dossier)
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    deadline = time.monotonic() + 30
    while (detail := httpx.get(f"{intake.url}/v1/projects/{project_id}", headers=staff).json())["status"] != "assigned":
        assert time.monotonic() < deadline, detail
        time.sleep(0.1)
    assert detail["promoter"]["family_name"] == promoter["family_name"], "readable before"
    # A bad request carrying the data must not leave it in any log either.
    bad = httpx.post(f"{intake.url}/v1/projects", headers=staff, json={**dossier, "country": "XX"})
    assert bad.status_code == 422

    forget = f"{intake.url}/v1/persons/{detail['person_id']}/forget"
    note = f"courrier du {marker}: demande d'effacement"
    forgotten = httpx.post(forget, headers=admin, json={"reason": "consent_withdrawn", "note": note})
    assert forgotten.status_code == 204, forgotten.text
    after = httpx.get(f"{intake.url}/v1/projects/{project_id}", headers=staff).json()
    assert after["promoter"] is None
    assert after["requested_amount_cents"] == 480_000 and after["status"] == "assigned", "amounts and facts stay"
    again = httpx.post(forget, headers=admin, json={"reason": "consent_withdrawn"})
    assert again.status_code == 409 and again.json()["rule"] == "forget_once"

    # The person comes back: a new person record, a new key; the old dossier still reads, erased.
    back = httpx.post(f"{intake.url}/v1/projects", headers=staff, json={**dossier, "title": "Retour"})
    assert back.status_code == 201, back.text
    returned = httpx.get(f"{intake.url}/v1/projects/{back.json()['id']}", headers=staff).json()
    assert returned["person_id"] != detail["person_id"] and returned["promoter"]["given_name"] == promoter["given_name"]
    assert returned["duplicate_reviews"] == [], "nothing of the forgotten person is left to match"
    old = httpx.get(f"{intake.url}/v1/projects/{project_id}", headers=staff)
    assert old.status_code == 200 and old.json()["promoter"] is None
    forgotten = httpx.post(f"{intake.url}/v1/persons/{returned['person_id']}/forget", headers=admin,
                           json={"reason": "end_of_programme_request"})
    assert forgotten.status_code == 204, "the new record is forgotten too"
    assert httpx.get(f"{intake.url}/v1/projects/{back.json()['id']}", headers=staff).json()["promoter"] is None

    time.sleep(1.0)  # the relays publish PersonForgotten; logs and spans are flushed by then
    databases = [intake.settings.database_name, partners.settings.database_name]
    on_kafka = asyncio.run(everything_on_kafka(kafka, intake.settings.topic_prefix))
    places = {
        "databases": everything_in_the_databases(databases),
        "Kafka": "\n".join(v.decode("utf-8", "replace") for v in on_kafka),
        "logs and spans": "\n".join(p.read_text(errors="replace") for p in tmp_path.iterdir()
                                    if p.suffix in (".log", ".jsonl")),
    }
    # The search does see what is there: the dossier's non-personal facts, everywhere.
    assert "PersonForgotten" in places["Kafka"] and "Atelier de couture" in places["Kafka"]
    assert "Atelier de couture" in places["databases"] and "consent_withdrawn" in places["databases"]
    assert project_id in places["logs and spans"]
    for value in on_kafka:
        if value.startswith(b'{"') and b'"specversion"' in value:
            validate_record(value)  # PersonForgotten and the rest, as the contract says
    for where, text in places.items():
        for field in ("given_name", "family_name", "phone", "email", "birth_date"):
            assert promoter[field] not in text, f"{field} of the forgotten person found in {where}"
        assert note not in text, f"the note of the forgetting found in clear in {where}"
        compact = text.replace(" ", "")
        assert '"residence_status":"regular"' not in compact and "residence_status=regular" not in compact, \
            f"residence_status of the forgotten person found in {where}"

    # Erasing is not tampering: every log still verifies, up to a checkpoint that covers the erasure.
    audit_settings = intake.settings.model_copy(update={"service": "audit"})
    deadline = time.monotonic() + 30
    while True:
        auditor = AuditApplication(audit_settings)
        asyncio.run(Replay(auditor, audit_settings).replay_once())
        report = auditor.verification()
        assert report["ok"], report
        logs = report["services"]
        if all(logs[s]["size"] and logs[s]["unverified_events"] == 0 for s in ("intake", "partners")):
            break
        assert time.monotonic() < deadline, logs
        time.sleep(1.0)
