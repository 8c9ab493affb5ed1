"""The audit's replay: every service's topic and `audit.checkpoints`, from offset 0, forever.

No consumer group and no committed offsets: the audit trusts nothing it did not
read itself, so each start reads everything again. The replay is "caught up"
when a fresh look at the end offsets finds nothing unread; only then is a
checkpoint whose events never came reported missing (a checkpoint is published
after its events are acknowledged, so they are on Kafka before it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.audit.application import AuditApplication
from shared.settings import Settings
from shared.topics import CHECKPOINTS_TOPIC, SERVICES, event_topic

log = logging.getLogger(__name__)


class Replay:
    def __init__(self, app: AuditApplication, settings: Settings, *, batch: int = 5000):
        self.app = app
        self.settings = settings
        self.batch = batch
        self.services = {settings.topic(event_topic(s)): s for s in SERVICES}
        self.checkpoints = settings.topic(CHECKPOINTS_TOPIC)
        self.topics = [*self.services, self.checkpoints]
        # What the operations endpoints read of every consumer (shared.http).
        self.processed = 0
        self.parked = 0
        self.lag_by_partition: dict[str, int] = {}
        self.running = False
        self.caught_up = asyncio.Event()

    @property
    def lag(self) -> int:
        return sum(self.lag_by_partition.values())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._replay(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit replay failed; starting again from offset 0 in 1 s")
                await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def _from_the_start(self) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
        """A consumer of every partition, at offset 0, and the audit's state forgotten."""
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options(), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self.app.reset()
            self.processed = 0
            yield consumer, partitions
        finally:
            await consumer.stop()

    async def replay_once(self, progress: Callable[[dict[str, tuple[int, int]]], None] | None = None) -> None:
        """Read every topic up to where it ends now, then settle and return (the command line).
        `progress` gets, per topic, (records read, records to read)."""
        async with self._from_the_start() as (consumer, partitions):
            starts, ends = await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
            while True:
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if progress:
                    done: dict[str, tuple[int, int]] = {}
                    for tp in partitions:
                        read, total = done.get(tp.topic, (0, 0))
                        done[tp.topic] = (read + min(positions[tp], ends[tp]) - starts[tp], total + ends[tp] - starts[tp])
                    progress(done)
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    break
                batches = await consumer.getmany(timeout_ms=500, max_records=self.batch)
                if batches:
                    await asyncio.to_thread(self._apply, batches)
            await asyncio.to_thread(self.app.settle)

    async def _replay(self, stop: asyncio.Event) -> None:
        async with self._from_the_start() as (consumer, partitions):
            self.running = True
            self.caught_up.clear()
            try:
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=200, max_records=self.batch)
                    if batches:
                        await asyncio.to_thread(self._apply, batches)
                        continue
                    ends = await consumer.end_offsets(partitions)
                    for tp in partitions:
                        self.lag_by_partition[f"{tp.topic}:{tp.partition}"] = max(0, ends[tp] - await consumer.position(tp))
                    if self.lag == 0:
                        await asyncio.to_thread(self.app.settle)
                        self.caught_up.set()
            finally:
                self.running = False

    async def _partitions(self) -> list[TopicPartition]:
        """Every partition of the topics the broker has (a service not started yet has none)."""
        admin = AIOKafkaAdminClient(**self.settings.kafka_client_options())
        await admin.start()
        try:
            described = await admin.describe_topics(self.topics)
        finally:
            await admin.close()
        missing = [d["topic"] for d in described if d["error_code"] or not d["partitions"]]
        if missing:
            log.warning("audit: topics not on the broker (yet): %s", ", ".join(missing))
        return [TopicPartition(d["topic"], p["partition"]) for d in described if d["topic"] not in missing
                for p in sorted(d["partitions"], key=lambda p: p["partition"])]

    def _apply(self, batches: dict[TopicPartition, list[Any]]) -> None:
        # In the order they were written, as far as the records tell (their timestamps): when two
        # records claim one place, the earlier is taken as the original.
        records = sorted((r for rs in batches.values() for r in rs),
                         key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
        events: list[tuple[str, bytes, str]] = []
        for record in records:
            where = f"{record.topic}:{record.partition}:{record.offset}"
            if record.topic == self.checkpoints:
                self.app.record_events(events)  # what was written before the checkpoint first
                events = []
                self.app.record_checkpoint(record.key, record.value, where)
            else:
                events.append((self.services[record.topic], record.value, where))
        self.app.record_events(events)
        self.processed += len(records)
