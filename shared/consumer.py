"""The consumer: other services' events into this service's store, effectively once (docs/events.md).

A record's effects (the events its handler saves) and its tracking record
(`<topic>:<partition>`, offset) commit in one transaction of the library's
process recorder. On (re)assignment the consumer seeks to the tracked position,
not to Kafka's committed offsets, so a redelivered record writes nothing.

A record that still fails after retries is parked: copied to `<topic>.dlq`
with its error, and recorded as parked together with its tracking record.
Every later record of the same aggregate (key) is parked behind it, so the
order within an aggregate is never broken, while the other aggregates flow.
`retry_parked()` processes parked records again, in order.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from eventsourcing.persistence import IntegrityError, Tracking
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from shared.envelope import CloudEvent
from shared.relay import producer
from shared.store import CommandContext, ParkedRecord, ServiceApplication, acting, processing
from shared.topics import dlq_topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer("passerelle.consumer")

# A handler turns an upstream event into commands on the application. It runs in a
# worker thread and must cause at most one save (all aggregates together).
Handler = Callable[[CloudEvent], None]


class _SeekToTracking(ConsumerRebalanceListener):
    def __init__(self, owner: Consumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner.seek_to_tracking(assigned)


class Consumer:
    def __init__(self, app: ServiceApplication, topics: list[str], handler: Handler, *,
                 max_attempts: int = 3, retry_delay: float = 0.2):
        self.app = app
        self.service = app.name
        self.topics = topics
        self.handler = handler
        self.group_id = f"passerelle-{self.service}"
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.processed = 0
        self.parked = 0
        self.lag_by_partition: dict[str, int] = {}
        self.running = False
        self._parked_keys: set[tuple[str, str]] = set()
        # Where each partition stands in the store, as far as this member knows (tracking name -> offset).
        self._positions: dict[str, int] = {}
        # Records that caused nothing, whose position is written once per fetched batch.
        self._unrecorded: dict[str, int] = {}
        self._kafka: AIOKafkaConsumer | None = None
        self._dlq: Any = None
        self._lock = asyncio.Lock()

    @property
    def lag(self) -> int:
        return sum(self.lag_by_partition.values())

    @staticmethod
    def tracking_name(topic: str, partition: int) -> str:
        return f"{topic}:{partition}"

    async def seek_to_tracking(self, partitions: Any) -> None:
        assert self._kafka is not None
        for tp in partitions:
            name = self.tracking_name(tp.topic, tp.partition)
            position = await asyncio.to_thread(self.app.tracking_position, name)
            self._unrecorded.pop(name, None)
            if position is None:
                self._positions.pop(name, None)
                await self._kafka.seek_to_beginning(tp)
            else:
                self._positions[name] = position
                self._kafka.seek(tp, position + 1)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; reconnects after broker errors."""
        while not stop.is_set():
            try:
                await self._run(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer of %s failed; restarting in 1 s", self.topics)
                await asyncio.sleep(1.0)

    async def _run(self, stop: asyncio.Event) -> None:
        settings = self.app.settings
        self._parked_keys = {(r.topic, r.key) for r in await asyncio.to_thread(self.app.parked_records)}
        self._kafka = AIOKafkaConsumer(
            **settings.kafka_client_options(), group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", metadata_max_age_ms=5000,
        )
        self._kafka.subscribe(self.topics, listener=_SeekToTracking(self))
        self._dlq = producer(**settings.kafka_client_options())
        try:
            await self._dlq.start()
            await self._kafka.start()
            self.running = True
            while not stop.is_set():
                batches = await self._kafka.getmany(timeout_ms=200, max_records=200)
                for records in batches.values():
                    for record in records:
                        async with self._lock:
                            await self.handle(record)
                if batches:
                    # Once per batch, all partitions together: this bookkeeping waits on the
                    # database and the broker, and every record behind it waits too.
                    await self._record_unrecorded()
                    # Kafka's committed offsets are informational (lag tools); tracking is the truth.
                    await self._kafka.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
                await self._measure_lag()
        finally:
            self.running = False
            await self._kafka.stop()
            await self._dlq.stop()

    async def _measure_lag(self) -> None:
        assert self._kafka is not None
        for tp in self._kafka.assignment():
            end = self._kafka.highwater(tp)
            if end is not None:
                position = await self._kafka.position(tp)
                self.lag_by_partition[f"{tp.topic}:{tp.partition}"] = max(0, end - position)

    # --- one record -----------------------------------------------------------

    async def handle(self, record: Any) -> None:
        tracking = Tracking(self.tracking_name(record.topic, record.partition), record.offset)
        key = (record.key or b"").decode()
        if (record.topic, key) in self._parked_keys:
            await self._park(record, "an earlier record of the same aggregate is parked")
            return
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                await asyncio.to_thread(self._process, record, tracking)
                self.processed += 1
                return
            except Exception as exc:  # noqa: BLE001 - any failure is retried, then parked
                error = "".join(traceback.format_exception_only(exc)).strip()
                log.warning("record %s:%d:%d failed (attempt %d/%d): %s", record.topic, record.partition,
                            record.offset, attempt, self.max_attempts, error)
                await asyncio.sleep(self.retry_delay * attempt)
        await self._park(record, error)

    async def _record_unrecorded(self) -> None:
        """Write, once per batch, the position of records that caused nothing.

        A crash before this only means those records are read again, and cause nothing again.
        """
        while self._unrecorded:
            name, offset = self._unrecorded.popitem()
            try:
                await asyncio.to_thread(self.app.record_position_hint, Tracking(name, offset))
            except IntegrityError:
                pass  # a later position is already recorded

    def _already_processed(self, tracking: Tracking, ask_the_store: bool = False) -> bool:
        position = self._positions.get(tracking.application_name)
        if ask_the_store or position is None:
            position = self.app.tracking_position(tracking.application_name)
        return position is not None and position >= tracking.notification_id

    def _processed(self, tracking: Tracking, recorded: bool) -> None:
        name, offset = tracking.application_name, tracking.notification_id
        self._positions[name] = max(offset, self._positions.get(name, -1))
        if recorded:
            self._unrecorded.pop(name, None)
        else:
            self._unrecorded[name] = offset

    def _process(self, record: Any, tracking: Tracking | None, resolve: ParkedRecord | None = None) -> None:
        if tracking is not None and self._already_processed(tracking):
            return  # a redelivery: its effects are already in the store
        headers = {k: v.decode() for k, v in (record.headers or ()) if v is not None}
        parent = propagate.extract(headers)
        extra = {"resolve": resolve} if resolve is not None else {}
        with tracer.start_as_current_span(
            f"{record.topic} process", context=parent, kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": record.topic,
                        "messaging.kafka.partition": record.partition, "messaging.kafka.offset": record.offset},
        ) as span:
            event = CloudEvent.parse(record.value)
            span.set_attribute("cloudevents.event_type", event.type)
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            context = CommandContext(actor=f"service:{self.service}", correlation_id=event.correlationid,
                                     causation_id=event.id, traceparent=carrier.get("traceparent"))
            try:
                with acting(context), processing(tracking, **extra) as state:
                    self.handler(event)
                    if not state.recorded and resolve is not None:
                        self.app.save()  # a retried record that caused nothing: mark it retried
            except IntegrityError:
                if tracking is not None and self._already_processed(tracking, ask_the_store=True):
                    return  # processed concurrently by another member: nothing written twice
                raise
            if tracking is not None:
                self._processed(tracking, recorded=state.recorded)

    async def _park(self, record: Any, error: str) -> None:
        assert self._dlq is not None
        key = (record.key or b"").decode()
        source = f"{record.topic}:{record.partition}:{record.offset}"
        headers = list(record.headers or ()) + [
            ("dlq-error", error[:2000].encode()), ("dlq-source", source.encode()), ("dlq-consumer", self.service.encode()),
        ]
        await (await self._dlq.send(dlq_topic(record.topic), value=record.value, key=record.key, headers=headers))
        parked = ParkedRecord(record.topic, record.partition, record.offset, key, record.value,
                              list(record.headers or ()), error)
        tracking = Tracking(self.tracking_name(record.topic, record.partition), record.offset)

        def park() -> None:
            if self._already_processed(tracking):
                return
            with processing(tracking, park=parked):
                self.app.save()
            self._processed(tracking, recorded=True)

        await asyncio.to_thread(park)
        self._parked_keys.add((record.topic, key))
        self.parked += 1
        log.error("parked %s (key %s) in %s: %s", source, key, dlq_topic(record.topic), error)

    async def retry_parked(self) -> dict[str, int]:
        """Process the parked records again, oldest first per aggregate; stop an aggregate at its first failure."""
        async with self._lock:
            records = await asyncio.to_thread(self.app.parked_records)
            failed: set[tuple[str, str]] = set()
            done = 0
            for parked in records:
                if (parked.topic, parked.key) in failed:
                    continue
                try:
                    await asyncio.to_thread(self._process, parked, None, parked)
                    done += 1
                except Exception:  # noqa: BLE001
                    log.exception("parked record %s:%d:%d still fails", parked.topic, parked.partition, parked.offset)
                    failed.add((parked.topic, parked.key))
            self._parked_keys = {(r.topic, r.key) for r in await asyncio.to_thread(self.app.parked_records)}
            return {"retried": done, "still_parked": len(records) - done}
