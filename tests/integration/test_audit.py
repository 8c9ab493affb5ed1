"""The auditor's replay on real PostgreSQL and Kafka: tampering with a store (then letting the
relay republish) or with a topic is detected and named; an honest log verifies (issue 5 §2, §4)."""

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


def audit(settings) -> AuditApplication:
    """The audit's replay of the test's topics, until caught up; only the service's public key."""
    signer = load_signer(settings)
    auditor = AuditApplication(settings.model_copy(update={"service": "audit"}), keys={signer.name: signer.public_key})

    async def scenario() -> None:
        replay = Replay(auditor, settings.model_copy(update={"service": "audit"}))
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
    asyncio.run(produce(kafka, topic, [(original.key, forged)]))
    found = problems(audit(settings))
    assert ("modified", 6) in found, found


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
