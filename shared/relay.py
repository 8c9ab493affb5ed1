"""The relay: a service's event store to its Kafka topic (docs/events.md).

The store is the outbox. The relay reads the library's notification log after
its last published position, publishes each event as a CloudEvent keyed by its
aggregate id with an idempotent producer (acks=all), and records the position
only once the broker has acknowledged the whole batch. A crash re-publishes the
unacknowledged tail (same bytes, same CloudEvent id), never skips.

One relay is active per service: on PostgreSQL it holds an advisory lock, on
SQLite a file lock. It is woken by every save in its own process, by the
store's LISTEN/NOTIFY channel on PostgreSQL, and otherwise polls.

The relay also keeps the RFC 9162 Merkle tree of what it published (leaves: the
records' leaf hashes, in `sequence` order), recorded with its position, and
every N events or T seconds publishes a signed checkpoint of it to
`audit.checkpoints`, once the events it covers are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import JSONTranscoder, Tracking
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags

from shared.checkpoint import Checkpoint, NoteSigner, load_signer
from shared.envelope import CONTENT_TYPE, record_from_state, record_from_stored_json
from shared.merkle import CompactTree
from shared.store import META, ServiceApplication
from shared.topics import CHECKPOINTS_TOPIC

log = logging.getLogger(__name__)
tracer = trace.get_tracer("passerelle.relay")


def _span_context(traceparent: str) -> SpanContext | None:
    """The span context of a W3C traceparent ("00-<trace id>-<span id>-<flags>")."""
    try:
        _, trace_id, span_id, flags = traceparent.split("-")
        return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    except ValueError:
        return None


def producer(bootstrap_servers: str, **overrides: Any) -> AIOKafkaProducer:
    """The idempotent producer every publisher uses: acks=all, one batch in flight per partition."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 0,  # latency first: batches form anyway while a batch is in flight
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


@dataclass
class _InFlight:
    """A batch sent to the broker, not yet acknowledged."""

    acks: list[Any]
    last_id: int
    count: int
    span: Any
    leaves: list[bytes] = field(default_factory=list)


@dataclass
class Checkpoints:
    """Where and how often a relay publishes its log's signed checkpoints."""

    topic: str
    signer: NoteSigner
    every_events: int = 1000
    every_seconds: float = 10.0

    @classmethod
    def of(cls, app: ServiceApplication) -> Checkpoints:
        s = app.settings
        return cls(s.topic(CHECKPOINTS_TOPIC), load_signer(s), s.checkpoint_every_events, s.checkpoint_every_seconds)


class Relay:
    def __init__(self, app: ServiceApplication, topic: str, *, batch_size: int = 500, poll_interval: float = 0.5,
                 coalesce: float = 0.001, checkpoints: Checkpoints | None = None):
        self.app = app
        self.checkpoints = checkpoints or Checkpoints.of(app)
        self.tree = CompactTree()
        self.checkpointed = (0, time.monotonic())  # (tree size, when) of the last checkpoint published
        self.service = app.name
        self.topic = topic
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.coalesce = coalesce
        self.tracking_name = f"relay:{topic}"
        self.position = 0
        self.sequence = 0
        self.published = 0
        self.active = False
        self._wake = asyncio.Event()
        self._notify_callbacks: list[Any] = []
        self._lock_lost = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Written while the next batch is read, built and sent (awaited before the next write).
        self._recording: asyncio.Future[Any] | None = None
        self._checkpoint_ack: asyncio.Future[Any] | None = None

    # --- waking -------------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe: called after every save in this process."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to wake
                loop.call_soon_threadsafe(self._wake.set)

    async def _wait(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        # Let the saves of concurrent requests gather into one batch: a few milliseconds
        # of latency for far fewer round trips under load.
        await asyncio.sleep(self.coalesce)
        self._wake.clear()

    # --- leadership ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event):
        """Hold the service's relay lock while the block runs; wait for it while another relay holds it."""
        if self.app.settings.persistence == "postgres":
            import psycopg

            s = self.app.settings
            conn = await psycopg.AsyncConnection.connect(
                host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                password=s.postgres_password, dbname=s.database_name, autocommit=True,
            )
            try:
                while not stop.is_set():
                    row = await (await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"relay:{self.service}",))).fetchone()
                    if row and row[0]:
                        break
                    await asyncio.sleep(1.0)
                await conn.execute(f"LISTEN {self.app.recorder.channel_name}")
                self._lock_lost.clear()
                listener = asyncio.create_task(self._listen(conn))
                try:
                    yield
                finally:
                    listener.cancel()
                    with contextlib.suppress(BaseException):
                        await listener
            finally:
                await conn.close()  # closing the session releases the advisory lock
        else:
            path = self.app.settings.data_dir / f"{self.service}.relay.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as handle:
                while not stop.is_set():
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(1.0)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def on_notify(self, callback: Any) -> None:
        """Also call `callback` (thread-safe, non-blocking) when the store notifies a new save."""
        self._notify_callbacks.append(callback)

    async def _listen(self, conn: Any) -> None:
        try:
            async for _ in conn.notifies():
                self._wake.set()
                for callback in self._notify_callbacks:
                    callback()
        finally:
            # The session holding the advisory lock is gone: another relay may take over, so
            # this one must stop publishing at once.
            self._lock_lost.set()
            self._wake.set()

    # --- publishing ---------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set. Restarts after broker or store errors."""
        if self._loop is None:
            self.app.on_save(self.wake)
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                async with self._leadership(stop):
                    if stop.is_set():
                        return
                    kafka = producer(**self.app.settings.kafka_client_options())
                    try:
                        await kafka.start()
                        self.active = True
                        await self._relay(kafka, stop)
                    finally:
                        self.active = False
                        await kafka.stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay of %s failed; restarting in 1 s", self.topic)
                await asyncio.sleep(1.0)

    async def _relay(self, kafka: AIOKafkaProducer, stop: asyncio.Event) -> None:
        self.position = await asyncio.to_thread(self.app.tracking_position, self.tracking_name) or 0
        self.sequence = await asyncio.to_thread(self.app.recorder.count_notifications, self.position)
        self.tree = await asyncio.to_thread(self._restore_tree)
        self.checkpointed = (0, time.monotonic())
        log.info("relay of %s starts after notification %d (sequence %d)", self.topic, self.position, self.sequence)
        self._read_position, self._read_sequence = self.position, self.sequence
        in_flight: _InFlight | None = None
        try:
            while not stop.is_set():
                if self._lock_lost.is_set():
                    raise RuntimeError(f"relay of {self.topic} lost its lock")
                # Pipelined: the next batch is read, built and sent while the broker
                # acknowledges the previous one; positions are still recorded in order.
                sent = await self._send_next(kafka)
                if in_flight is not None:
                    await self._complete(in_flight)
                    await self._checkpoint(kafka)
                in_flight = sent
                if sent is None:
                    await self._checkpoint(kafka)
                    await self._wait()
        finally:
            if in_flight is not None and not self._lock_lost.is_set():
                with contextlib.suppress(Exception):
                    await self._complete(in_flight)
            with contextlib.suppress(Exception):
                await self._settled()

    async def drain(self, kafka: AIOKafkaProducer) -> int:
        """Publish everything stored so far, pipelined as the running relay does; returns how many."""
        self._read_position, self._read_sequence = self.position, self.sequence
        published, in_flight = 0, None
        while True:
            sent = await self._send_next(kafka)
            if in_flight is not None:
                await self._complete(in_flight)
                await self._checkpoint(kafka)
                published += in_flight.count
            if sent is None:
                await self._settled()
                return published
            in_flight = sent

    async def _send_next(self, kafka: AIOKafkaProducer) -> _InFlight | None:
        """Read, build and send the batch after what was read last; None when there is none."""
        with suppress_instrumentation():  # polling is not worth a trace; the publish span is
            notifications = await asyncio.to_thread(self.app.recorder.log_after, self._read_position, self.batch_size)
        if not notifications:
            return None
        records, links = await asyncio.to_thread(self._records, notifications, self._read_sequence)
        # One span per batch, linked to the request that caused each event (OTel messaging
        # conventions for batches); each record's traceparent header is that request's own.
        span = tracer.start_span(
            f"{self.topic} publish", kind=SpanKind.PRODUCER, links=links,
            attributes={"messaging.system": "kafka", "messaging.destination.name": self.topic,
                        "messaging.batch.message_count": len(records)},
        )
        acks = [await kafka.send(self.topic, value=value, key=key, headers=headers)
                for key, value, headers, _ in records]
        self._read_position = notifications[-1].id
        self._read_sequence += len(notifications)
        return _InFlight(acks, notifications[-1].id, len(notifications), span, [leaf for *_, leaf in records])

    async def _complete(self, batch: _InFlight) -> None:
        """Wait until every record of the batch is acknowledged by all in-sync replicas, then
        record its position. Batches complete in the order they were sent."""
        try:
            await asyncio.gather(*batch.acks)
        finally:
            batch.span.end()
        for leaf in batch.leaves:
            self.tree.append(leaf)
        # The position (with the tree at it) is written while the next batch goes out: it is a
        # hint of where to resume, so the relay need not wait for it, only keep the writes in order.
        if self._recording is not None:
            await self._recording
        with suppress_instrumentation():
            self._recording = asyncio.ensure_future(asyncio.to_thread(
                self.app.record_position_hint, Tracking(self.tracking_name, batch.last_id),
                json.dumps(self.tree.to_dict())))
        self.position = batch.last_id
        self.sequence += batch.count
        self.published += batch.count

    async def _checkpoint(self, kafka: AIOKafkaProducer) -> None:
        """Publish a signed checkpoint of the tree when N events or T seconds have passed since
        the last one (and the tree grew). Every event it covers is acknowledged already."""
        size, when = self.checkpointed
        if self.tree.size == size:
            return
        if self.tree.size - size < self.checkpoints.every_events and \
                time.monotonic() - when < self.checkpoints.every_seconds:
            return
        checkpoint = Checkpoint(self.checkpoints.signer.name, self.tree.size, self.tree.root())
        note = self.checkpoints.signer.sign(checkpoint.text())  # Ed25519: the same note for the same tree
        if self._checkpoint_ack is not None:
            await self._checkpoint_ack  # the previous one is on Kafka (or its failure restarts the relay)
        # Not waited for here: it goes out with the next batch; a failure surfaces at the next checkpoint.
        self._checkpoint_ack = await kafka.send(self.checkpoints.topic, value=note.encode(),
                                                key=self.service.encode(),
                                                headers=[("content-type", b"text/plain; charset=utf-8")])
        self.checkpointed = (checkpoint.size, time.monotonic())

    async def _settled(self) -> None:
        """Wait for the last position write and the last checkpoint (stopping, or drained)."""
        recording, ack, self._recording, self._checkpoint_ack = self._recording, self._checkpoint_ack, None, None
        if recording is not None:
            await recording
        if ack is not None:
            await ack

    def _restore_tree(self) -> CompactTree:
        """The tree at the relay's position: as recorded with it, or rebuilt from the log
        (the first start of a relay that kept none)."""
        recorded = self.app.recorder.log_tree(self.tracking_name)
        if recorded is not None:
            tree = CompactTree.from_dict(json.loads(recorded))
            if tree.size == self.sequence:
                return tree
            log.warning("relay of %s: recorded tree of %d leaves, position at %d: rebuilding it",
                        self.topic, tree.size, self.sequence)
        tree, position, sequence = CompactTree(), 0, 0
        while position < self.position:
            notifications = [n for n in self.app.recorder.log_after(position, self.batch_size)
                             if n.id <= self.position]
            if not notifications:
                break
            for *_, leaf in self._records(notifications, sequence)[0]:
                tree.append(leaf)
            position, sequence = notifications[-1].id, sequence + len(notifications)
        return tree

    def _records(self, notifications: list[Any], first_sequence: int
                 ) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]], bytes]], list[Link]]:
        """Kafka records of stored events, built from the stored state as it is (no upcasting),
        each with its leaf hash."""
        mapper = self.app.mapper
        # The fast path reads the library's own JSON format; any other transcoder: its decoder.
        fast = type(mapper.transcoder) is JSONTranscoder
        records, links = [], []
        linked: set[str] = set()
        for offset, notification in enumerate(notifications):
            stored = notification.state
            if mapper.cipher:
                stored = mapper.cipher.decrypt(stored)
            if mapper.compressor:
                stored = mapper.compressor.decompress(stored)
            name = notification.topic.rpartition(".")[2].rpartition(":")[2]
            record = fast and record_from_stored_json(self.service, name, notification.originator_id,
                                                      notification.originator_version, stored, first_sequence + offset)
            if not record:  # a value the fast path does not read: the library's decoder
                state = mapper.transcoder.decode(stored)
                version = state.pop("class_version", 1)
                envelope, value = record_from_state(self.service, name, version, notification.originator_id,
                                                    notification.originator_version, state, first_sequence + offset)
                meta = state.get(META) or {}
            else:
                envelope, value, meta = record
            headers = [("content-type", CONTENT_TYPE.encode())]
            traceparent = meta.get("traceparent")
            if traceparent:
                headers.append(("traceparent", traceparent.encode()))
                # One link per request in the batch (a request's events share its traceparent).
                if traceparent not in linked and (context := _span_context(traceparent)) is not None:
                    linked.add(traceparent)
                    links.append(Link(context))
            records.append((envelope["subject"].encode(), value, headers, bytes.fromhex(envelope["leafhash"])))
        return records, links

    def lag(self) -> int:
        latest = self.app.recorder.max_notification_id() or 0
        return max(0, latest - self.position) if self.active else latest
