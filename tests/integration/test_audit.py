"""The auditor's replay on real PostgreSQL and Kafka: tampering with a store (then letting the
relay republish) or with a topic is detected and named; an honest log verifies."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from shared.checkpoint import load_signer
from shared.envelope import CloudEvent
from shared.relay import Checkpoints, Relay
from shared.topics import CHECKPOINTS_TOPIC
from tests.conftest import POSTGRES
from tests.integration.kafka_tools import produce, read_all
from tests.integration.sample import SampleApplication

pytestmark = pytest.mark.integration
EVENTS = 12


class AuditedLog(SampleApplication):
    """A service whose log the audit follows (it replays the four services' topics)."""

    name = "intake"


@pytest.fixture
def service(make_settings):
    settings = make_settings("intake")
    app = AuditedLog(settings)
    # Four aggregates (so the records spread over the partitions), then eight increments:
    # sequence 4 + i holds "cause-0i".
    tallies = [app.open(f"t{j}") for j in range(4)]
    for i in range(EVENTS - 4):
        app.increment(tallies[i % 4], cause=f"cause-{i:02d}")
    publish(app)
    yield settings, app
    app.close()


def publish(app: AuditedLog) -> None:
    """Run the relay until everything stored is on Kafka and signed in a checkpoint."""
    checkpoints = Checkpoints(app.settings.topic(CHECKPOINTS_TOPIC), load_signer(app.settings), every_events=4,
                              every_seconds=0.1)

    async def scenario() -> None:
        relay = Relay(app, app.settings.topic("intake.events"), batch_size=5, poll_interval=0.05,
                      checkpoints=checkpoints)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        total = app.recorder.count_notifications(10**12)
        deadline = time.monotonic() + 30
        while (relay.sequence < total or relay.checkpointed[0] < total) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(scenario())


def republish(app: AuditedLog) -> None:
    """What an operator does after editing the store: the relay starts again from the beginning."""
    with psycopg.connect(dbname=app.settings.database_name, autocommit=True, **POSTGRES) as conn:
        conn.execute("DELETE FROM intake_tracking WHERE application_name LIKE 'relay:%'")
        conn.execute("DELETE FROM intake_log_tree")
    publish(app)


def first_id(app: AuditedLog) -> int:
    with psycopg.connect(dbname=app.settings.database_name, autocommit=True, **POSTGRES) as conn:
        return conn.execute("SELECT min(notification_id) FROM intake_events").fetchone()[0]


def sql(app: AuditedLog, *statements: str) -> None:
    with psycopg.connect(dbname=app.settings.database_name, autocommit=True, **POSTGRES) as conn:
        for statement in statements:
            conn.execute(statement)


def audit(settings, readers: int | None = None) -> AuditApplication:
    """The audit's replay of the test's topics, until caught up; only the service's public key."""
    signer = load_signer(settings)
    auditor = AuditApplication(settings.model_copy(update={"service": "audit"}), keys={signer.name: signer.public_key})

    async def scenario() -> None:
        replay = Replay(auditor, settings.model_copy(update={"service": "audit"}), readers=readers)
        stop = asyncio.Event()
        task = asyncio.create_task(replay.run(stop))
        try:
            await asyncio.wait_for(replay.caught_up.wait(), 30)
        finally:
            stop.set()
            await task

    asyncio.run(scenario())
    return auditor


def problems(auditor: AuditApplication) -> set[tuple[str, int | None]]:
    return {(p.kind, p.sequence) for p in auditor.problems() if p.service == "intake"}


def test_an_honest_log_verifies_up_to_its_last_checkpoint(service):
    settings, app = service
    auditor = audit(settings)
    report = auditor.verification()
    assert report["ok"], report
    intake = report["services"]["intake"]
    assert intake["size"] == EVENTS and intake["verified_checkpoint"]["size"] == EVENTS


def test_an_event_modified_in_the_store_and_republished_is_named(service):
    settings, app = service
    sql(app, "UPDATE intake_events SET state = convert_to(replace(convert_from(state, 'UTF8'), 'cause-01', "
             f"'cause-91'), 'UTF8') WHERE notification_id = {first_id(app) + 5}")
    republish(app)
    found = problems(audit(settings))
    assert ("modified", 5) in found, found
    assert all(seq == 5 for kind, seq in found if kind in ("modified", "moved", "inserted")), found
    assert any(kind in ("fork", "checkpoint mismatch") for kind, _ in found), found


def test_an_event_deleted_from_the_store_and_republished_is_named(service):
    settings, app = service
    sql(app, f"DELETE FROM intake_events WHERE notification_id = {first_id(app) + 7}")
    republish(app)
    found = problems(audit(settings))
    # What followed the deleted event moved up one place.
    assert ("moved", 7) in found and min(seq for kind, seq in found if kind == "moved") == 7, found


def test_an_event_inserted_into_the_store_and_republished_is_named(service):
    settings, app = service
    first = first_id(app)
    sql(app,
        f"UPDATE intake_events SET notification_id = notification_id + 1000 WHERE notification_id > {first + 2}",
        f"INSERT INTO intake_events (originator_id, originator_version, topic, state, notification_id)"
        f" SELECT '{uuid.uuid4()}', 1, topic, state, {first + 3} FROM intake_events WHERE notification_id = {first}")
    republish(app)
    found = problems(audit(settings))
    assert ("inserted", 3) in found, found  # and what followed moved down one place
    assert ("moved", 4) in found and min(seq for kind, seq in found if kind in ("moved", "inserted")) == 3, found


def test_two_events_swapped_in_the_store_and_republished_are_named(service):
    settings, app = service
    a = first_id(app) + 8
    sql(app,
        f"UPDATE intake_events SET notification_id = -1 WHERE notification_id = {a}",
        f"UPDATE intake_events SET notification_id = {a} WHERE notification_id = {a + 1}",
        f"UPDATE intake_events SET notification_id = {a + 1} WHERE notification_id = -1")
    republish(app)
    found = problems(audit(settings))
    assert {("moved", 8), ("moved", 9)} <= found and {s for k, s in found if k == "moved"} == {8, 9}, found


def test_a_record_forged_on_the_topic_is_named(service, kafka):
    settings, app = service
    topic = settings.topic("intake.events")
    original = next(r for r in asyncio.run(read_all(kafka, topic, EVENTS))
                    if CloudEvent.parse(r.value).sequence == 6)
    # Same leafhash, other content: the hash gives it away.
    forged = original.value.replace(b"cause-02", b"cause-92")
    assert forged != original.value
    asyncio.run(produce(kafka, topic, [(original.key, forged), (original.key, b'{"not": "an event"}')]))
    auditor = audit(settings)
    found = problems(auditor)
    assert ("modified", 6) in found, found
    # A record that is no event of the log at all is named where it is, with no place in the log.
    unreadable = [p.detail for p in auditor.problems() if p.kind == "modified" and p.sequence is None]
    assert len(unreadable) == 1 and f"{topic}:{original.partition}:" in unreadable[0] \
        and "is not a CloudEvent of the log" in unreadable[0], unreadable


@pytest.mark.parametrize("readers", [1, 3])
def test_a_forged_record_and_a_republished_one_are_named_by_any_number_of_reader_processes(service, kafka, readers):
    """Each reader checks the records of its own partitions; what it finds is named with the service,
    the sequence and the record's place, whichever reader found it."""
    settings, app = service
    topic = settings.topic("intake.events")
    records = asyncio.run(read_all(kafka, topic, EVENTS))
    original = next(r for r in records if CloudEvent.parse(r.value).sequence == 6)
    other = next(r for r in records if r.partition != original.partition)
    asyncio.run(produce(kafka, topic, [(original.key, original.value.replace(b"cause-02", b"cause-92")),
                                       (other.key, other.value)]))  # forged; republished as it was
    auditor = audit(settings, readers)
    found = [p for p in auditor.problems() if p.service == "intake"]
    assert [(p.kind, p.sequence) for p in found] == [("modified", 6)], found
    assert found[0].detail.startswith(f"the leafhash of {topic}:{original.partition}:"), found
    replay = auditor.verification()["services"]["intake"]
    assert replay["size"] == EVENTS and replay["events_seen"] == EVENTS + 2 and replay["verified_checkpoint"]["size"] == EVENTS


def test_records_dropped_from_the_topic_are_named_missing(service, kafka):
    settings, app = service
    topic = settings.topic("intake.events")
    records = asyncio.run(read_all(kafka, topic, EVENTS))
    victim = max(range(3), key=lambda p: sum(r.partition == p for r in records))
    dropped = sorted(CloudEvent.parse(r.value).sequence for r in records if r.partition == victim)

    async def drop() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            end = max(r.offset for r in records if r.partition == victim) + 1
            await admin.delete_records({TopicPartition(topic, victim): RecordsToDelete(before_offset=end)})
        finally:
            await admin.close()

    asyncio.run(drop())
    found = problems(audit(settings))
    assert ("missing", dropped[0]) in found, (found, dropped)


def test_the_audit_api_serves_the_verification_and_proofs_that_check_against_the_checkpoint(service):
    import base64

    from fastapi.testclient import TestClient

    from services.audit.main import create_app
    from shared.merkle import verify_consistency, verify_inclusion
    from tests.conftest import bearer

    settings, app = service
    audit_settings = settings.model_copy(update={"service": "audit", "port": 0})
    api = create_app(audit_settings)
    with TestClient(api) as client:
        auditor = bearer(audit_settings, "auditor")
        deadline = time.monotonic() + 30
        while (r := client.get("/v1/verification", headers=auditor)).json()["services"]["intake"]["size"] < EVENTS:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        report = r.json()
        assert report["ok"] and report["services"]["intake"]["verified_checkpoint"]["size"] == EVENTS
        root = bytes.fromhex(report["services"]["intake"]["verified_checkpoint"]["root"])

        proof = client.get("/v1/proofs/inclusion", params={"service": "intake", "seq": 5}, headers=auditor).json()
        assert proof["tree_size"] == EVENTS and base64.b64decode(proof["root_base64"]) == root
        assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), 5, EVENTS,
                                [bytes.fromhex(p) for p in proof["proof"]], root)
        consistency = client.get("/v1/proofs/consistency", params={"service": "intake", "from": 4},
                                 headers=auditor).json()
        assert verify_consistency(4, EVENTS, bytes.fromhex(consistency["from_root"]), root,
                                  [bytes.fromhex(p) for p in consistency["proof"]])

        for params, status in (({"service": "intake", "seq": EVENTS}, 422), ({"service": "nobody", "seq": 0}, 404),
                               ({"service": "intake", "seq": -1}, 422), ({"service": "intake"}, 422)):
            r = client.get("/v1/proofs/inclusion", params=params, headers=auditor)
            assert r.status_code == status and r.headers["content-type"] == "application/problem+json", (params, r.text)
        assert client.get("/v1/verification").status_code == 401
        assert client.get("/v1/verification", headers=bearer(audit_settings, "intake_officer")).status_code == 403


def test_the_standalone_verifier_checks_a_record_its_proofs_and_the_signed_checkpoints(service, kafka, tmp_path):
    """tools/verify.py, run as an auditor would: a record from Kafka, proofs from the audit API,
    checkpoints from audit.checkpoints, the verifier key from GET /v1/keys."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from shared.checkpoint import Checkpoint, open_note

    settings, app = service
    signer = load_signer(settings)
    vkey = signer.describe()["verifier_key"]
    auditor = audit(settings)
    notes = [r.value.decode() for r in asyncio.run(read_all(kafka, settings.topic(CHECKPOINTS_TOPIC), 2))]
    by_size = {Checkpoint.parse(open_note(n, signer.name, signer.public_key)).size: n for n in notes}
    old_size, new_size = min(by_size), max(by_size)
    assert new_size == EVENTS and old_size < new_size
    record = next(r.value for r in asyncio.run(read_all(kafka, settings.topic("intake.events"), EVENTS))
                  if CloudEvent.parse(r.value).sequence == 9)
    files = {"record.json": record.decode(), "old.txt": by_size[old_size], "new.txt": by_size[new_size],
             "inclusion.json": json.dumps(auditor.inclusion_proof("intake", 9, new_size)),
             "consistency.json": json.dumps(auditor.consistency_proof("intake", old_size, new_size)),
             "forged.json": record.decode().replace("cause-05", "cause-95"),
             "elsewhere.json": record.decode().replace('"/passerelle/intake"', '"/passerelle/funding"')}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    tool = str(Path(__file__).resolve().parents[2] / "tools" / "verify.py")

    def verify(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, tool, *args, "--key", vkey], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    assert verify("note", "new.txt").returncode == 0
    ok = verify("inclusion", "record.json", "inclusion.json", "new.txt")
    assert ok.returncode == 0 and "included: event 9" in ok.stdout, ok.stderr
    ok = verify("consistency", "consistency.json", "old.txt", "new.txt")
    assert ok.returncode == 0, ok.stderr
    assert "cause-95" in files["forged.json"]
    refused = verify("inclusion", "forged.json", "inclusion.json", "new.txt")
    assert refused.returncode == 1 and "NOT VERIFIED" in refused.stderr
    refused = verify("inclusion", "elsewhere.json", "inclusion.json", "new.txt")
    assert refused.returncode == 1 and "an event of /passerelle/funding" in refused.stderr, refused.stderr
    refused = verify("consistency", "consistency.json", "new.txt", "old.txt")
    assert refused.returncode == 1
    other = a_stranger_key()
    refused = subprocess.run([sys.executable, tool, "note", "new.txt", "--key", other], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "not signed" in refused.stderr


def a_stranger_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.checkpoint import NoteSigner

    return NoteSigner("passerelle/intake", Ed25519PrivateKey.generate()).describe()["verifier_key"]


def test_the_auditors_command_line_reports_a_clean_log_then_a_forged_record(service, kafka, tmp_path):
    import json
    import os
    import subprocess
    import sys

    settings, app = service
    env = {**os.environ, "PASSERELLE_DATA_DIR": str(settings.data_dir), "PASSERELLE_KEYS_DIR": str(settings.keys_dir),
           "PASSERELLE_TOPIC_PREFIX": settings.topic_prefix,
           "KAFKA_BOOTSTRAP_SERVERS": kafka}
    command = [sys.executable, "-m", "services.audit.cli", "--out", str(tmp_path)]

    clean = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["services"]["intake"]["verified_checkpoint"]["size"] == EVENTS

    topic = settings.topic("intake.events")
    original = next(r for r in asyncio.run(read_all(kafka, topic, EVENTS)) if CloudEvent.parse(r.value).sequence == 4)
    asyncio.run(produce(kafka, topic, [(original.key, original.value.replace(b"cause-00", b"cause-99"))]))
    tampered = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "modified at 4" in tampered.stdout
