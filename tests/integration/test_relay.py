"""The relay on real PostgreSQL and Kafka: every event once, in order, also under concurrency and crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

from shared.envelope import CloudEvent, verify_record
from shared.relay import Relay
from shared.topics import Topic, create_topics
from tests.integration.kafka_tools import read_all
from tests.integration.sample import SampleApplication

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "sqlite"])
def sample(make_settings, request):
    settings = make_settings("sample")
    if request.param == "sqlite":
        settings = settings.model_copy(update={"persistence": "sqlite"})
    asyncio.run(create_topics(settings, [Topic("sample.events", 3)]))
    app = SampleApplication(settings)
    yield settings, app
    app.close()


def _write_concurrently(app: SampleApplication, writers: int, per_writer: int) -> int:
    """`writers` threads open a tally each and increment it; two also fight over a shared tally."""
    shared_id = app.open("shared")
    errors: list[BaseException] = []
    written = [1]
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            tally_id = app.open(f"writer-{n}")
            count = 1
            for i in range(per_writer):
                app.increment(tally_id, cause=f"{n}-{i}")
                count += 1
                if i % 5 == 0:
                    try:
                        app.increment(shared_id, cause=f"{n}-{i}")
                        count += 1
                    except Exception as exc:  # optimistic concurrency: a conflict writes nothing
                        if "IntegrityError" not in type(exc).__name__:
                            raise
            with lock:
                written[0] += count
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return written[0]


def _check_log(records, expected: int) -> None:
    events = [CloudEvent.parse(r.value) for r in records]
    ids = [e.id for e in events]
    assert len(set(ids)) == expected, f"{len(set(ids))} distinct events on Kafka, {expected} saved"
    assert sorted({e.sequence for e in events}) == list(range(expected)), "sequence must be 0..n-1 without gaps"
    by_key: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[r.key.decode()].append(CloudEvent.parse(r.value).aggregateversion)
    for key, versions in by_key.items():
        deduped = [v for i, v in enumerate(versions) if v not in versions[:i]]
        assert deduped == sorted(deduped) == list(range(1, len(deduped) + 1)), f"aggregate {key} out of order"
    assert all(verify_record(r.value) for r in records)


def test_relay_publishes_every_event_once_in_order_with_8_concurrent_writers(sample, kafka):
    settings, app = sample
    topic = settings.topic("sample.events")

    async def scenario() -> int:
        relay = Relay(app, topic, batch_size=50, poll_interval=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        written = await asyncio.to_thread(_write_concurrently, app, 8, 40)
        deadline = time.monotonic() + 60
        while relay.published < written and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await task
        return written

    written = asyncio.run(scenario())
    records = asyncio.run(read_all(kafka, topic, written))
    assert len(records) == written, "each event published exactly once when nothing crashes"
    _check_log(records, written)


def test_relay_killed_mid_batch_loses_nothing_and_republishes_the_same_bytes(sample, kafka):
    settings, app = sample
    topic = settings.topic("sample.events")
    written = 0
    for n in range(30):  # 30 aggregates of 100 events, saved in bulk
        tally = app.repository.get(app.open(f"crash-{n}"))
        for i in range(99):
            tally.increment(1, str(i))
        app.save(tally)
        written += 100

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.integration.relay_worker",
                                 settings.model_dump_json(), "200"], cwd=os.getcwd())

    worker = start()
    # Kill -9 as soon as part of the log is on Kafka: the relay is between batches or inside one.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        position = app.tracking_position(f"relay:{topic}") or 0
        if position >= 600:
            break
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed_at = app.tracking_position(f"relay:{topic}") or 0
    assert 0 < killed_at < written, "the kill must land mid-stream for this test to mean anything"

    worker = start()
    try:
        deadline = time.monotonic() + 60
        while (app.tracking_position(f"relay:{topic}") or 0) < app.recorder.max_notification_id():
            assert time.monotonic() < deadline, "the restarted relay did not catch up"
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait()

    records = asyncio.run(read_all(kafka, topic, written))
    _check_log(records, written)
    # A re-published event is byte for byte the record published before the crash.
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        by_id[CloudEvent.parse(r.value).id].add(r.value)
    assert all(len(values) == 1 for values in by_id.values())


def test_only_one_relay_is_active_per_service(sample, kafka):
    settings, app = sample
    topic = settings.topic("sample.events")
    other = SampleApplication(settings)

    async def scenario() -> tuple[bool, bool]:
        first, second = Relay(app, topic), Relay(other, topic)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(first.run(stop)), asyncio.create_task(second.run(stop))]
        await asyncio.sleep(3)
        states = (first.active, second.active)
        stop.set()
        await asyncio.gather(*tasks)
        return states

    try:
        states = asyncio.run(scenario())
    finally:
        other.close()
    assert sorted(states) == [False, True]


def test_a_relay_whose_lock_session_dies_stops_and_another_takes_over(make_settings, kafka):
    import psycopg

    from tests.conftest import POSTGRES

    settings = make_settings("sample")
    asyncio.run(create_topics(settings, [Topic("sample.events", 3)]))
    first_app, second_app = SampleApplication(settings), SampleApplication(settings)
    topic = settings.topic("sample.events")

    async def scenario() -> tuple[bool, bool, bool]:
        first, second = Relay(first_app, topic), Relay(second_app, topic)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(first.run(stop))]
        await asyncio.sleep(2)
        tasks.append(asyncio.create_task(second.run(stop)))
        await asyncio.sleep(2)
        before = (first.active, second.active)
        # An administrator (or a network cut) ends the first relay's lock session.
        with psycopg.connect(dbname=settings.database_name, autocommit=True, **POSTGRES) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        deadline = time.monotonic() + 15
        while not second.active and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        after = second.active
        stop.set()
        await asyncio.gather(*tasks)
        return before, after, first.active

    try:
        before, after, first_still = asyncio.run(scenario())
    finally:
        first_app.close()
        second_app.close()
    assert before == (True, False)
    assert after is True, "the standby relay takes over"
    assert first_still is False, "the relay that lost its lock does not publish beside it"
