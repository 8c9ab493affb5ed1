"""The consumer on real PostgreSQL and Kafka: effectively once, resumable, poison records parked."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import pytest

from shared.consumer import Consumer
from shared.envelope import encode, leaf_hash
from shared.topics import Topic, create_topics, dlq_topic
from tests.integration.kafka_tools import produce, read_all
from tests.integration.sample import SampleApplication, upstream_handler

pytestmark = pytest.mark.integration


def upstream_event(subject: str, sequence: int) -> tuple[bytes, bytes]:
    envelope = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/passerelle/upstream",
        "type": "passerelle.upstream.Happened.v1", "subject": subject,
        "time": datetime.now(timezone.utc).isoformat(), "datacontenttype": "application/json",
        "data": {"n": sequence}, "sequence": sequence, "aggregateversion": sequence + 1,
        "actor": "service:upstream", "correlationid": subject, "causationid": subject, "codeversion": "test",
    }
    envelope["leafhash"] = leaf_hash(envelope)
    return subject.encode(), encode(envelope)


@pytest.fixture
def downstream(make_settings):
    settings = make_settings("sample")
    topic = settings.topic("upstream.events")
    asyncio.run(create_topics(settings, [Topic("upstream.events", 3), Topic("upstream.events.dlq", 3)]))
    app = SampleApplication(settings)
    yield settings, app, topic
    app.close()


async def _consume_until(consumer: Consumer, done, timeout: float = 30.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "the consumer did not get there in time"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task


def _counts(app: SampleApplication, subjects) -> dict[str, int]:
    return {s: (t.count if (t := app.tally(s)) else 0) for s in subjects}


def test_effects_are_once_across_redelivery_and_restart(downstream, kafka):
    settings, app, topic = downstream
    subjects = [f"agg-{i}" for i in range(5)]
    records = [upstream_event(s, n) for n in range(4) for s in subjects]
    asyncio.run(produce(kafka, topic, records))

    consumer = Consumer(app, [topic], upstream_handler(app))
    asyncio.run(_consume_until(consumer, lambda: consumer.processed >= len(records)))
    assert _counts(app, subjects) == {s: 4 for s in subjects}
    events_before = app.recorder.max_notification_id()

    # A new consumer group has no committed offsets: Kafka redelivers everything from offset 0.
    again = Consumer(app, [topic], upstream_handler(app))
    again.group_id = f"another-group-{uuid.uuid4().hex}"
    redelivered = []

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        await asyncio.sleep(4)
        # Hand the same records to the handler path directly too, as a zombie member would.
        for r in await read_all(kafka, topic, len(records)):
            redelivered.append(r)
            await again.handle(r)
        stop.set()
        await task

    asyncio.run(scenario())
    assert len(redelivered) == len(records)
    assert _counts(app, subjects) == {s: 4 for s in subjects}, "a redelivered record must have no second effect"
    assert app.recorder.max_notification_id() == events_before, "nothing new written"


def test_a_poison_record_is_parked_with_its_aggregate_and_the_rest_flows(downstream, kafka):
    settings, app, topic = downstream
    poison = {"bad"}
    # All on one key per aggregate; "bad" fails, its later records must wait behind it.
    records = [upstream_event("good-1", 0), upstream_event("bad", 0), upstream_event("good-2", 0),
               upstream_event("bad", 1), upstream_event("good-1", 1), upstream_event("bad", 2)]
    asyncio.run(produce(kafka, topic, records))

    consumer = Consumer(app, [topic], upstream_handler(app, poison), max_attempts=2, retry_delay=0.01)
    asyncio.run(_consume_until(consumer, lambda: consumer.processed + consumer.parked >= len(records)))
    assert _counts(app, ["good-1", "good-2", "bad"]) == {"good-1": 2, "good-2": 1, "bad": 0}
    parked = app.parked_records()
    assert [(p.key, p.offset) for p in parked] == sorted((p.key, p.offset) for p in parked)
    assert [p.key for p in parked] == ["bad", "bad", "bad"]
    assert "cannot process bad" in parked[0].error
    assert "earlier record of the same aggregate is parked" in parked[1].error

    dead = asyncio.run(read_all(kafka, dlq_topic(topic), 3))
    assert len(dead) == 3
    assert all(dict(r.headers).get("dlq-error") for r in dead)

    # After a restart the aggregate is still held back: a new record for it is parked too.
    asyncio.run(produce(kafka, topic, [upstream_event("bad", 3), upstream_event("good-2", 1)]))
    restarted = Consumer(app, [topic], upstream_handler(app, poison), max_attempts=1, retry_delay=0.01)
    asyncio.run(_consume_until(restarted, lambda: restarted.processed + restarted.parked >= 2))
    assert restarted.parked == 1
    assert _counts(app, ["good-2", "bad"]) == {"good-2": 2, "bad": 0}

    # The cause is fixed: a retry processes the parked records in order, once.
    poison.clear()

    async def retry() -> dict[str, int]:
        fixed = Consumer(app, [topic], upstream_handler(app, poison))
        return await fixed.retry_parked()

    assert asyncio.run(retry()) == {"retried": 4, "still_parked": 0}
    tally = app.tally("bad")
    assert tally is not None and tally.count == 4
    assert app.parked_records() == []
    assert asyncio.run(retry()) == {"retried": 0, "still_parked": 0}
    assert app.tally("bad").count == 4
