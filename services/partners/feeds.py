"""Partner feeds: each partner's own topic, `partner.<id>.events` (docs/events.md, docs/security.md).

A consume-transform-produce job in the partners worker. It reads the services'
topics, keeps the events about dossiers assigned to a partner whose feed is
enabled, minimises each to what that partner needs, and publishes it to the
partner's topic keyed by the dossier's id (one partition per dossier: the
partner reads a dossier's events in the order the job published them).

In the order they happened
    Kafka orders each partition, not the four services' topics together: read
    as fetched, a follow-up visit could reach the partner before the financing
    decision it follows. So the job holds what it read (`CausalOrder`) until
    nothing that happened before it can still be unread, then publishes in the
    order the events happened: a dossier's events, across services, in the
    order of their `time`.

Who sees what
    An event about dossier D goes to partner P when, in partners' own store,
    D is assigned to P (as support structure or local operator) and the event
    happened at or after both D's assignment (PartnersAssigned) and P's feed
    enablement. The feed starts there: a dossier's submission and eligibility
    come before its assignment, whose request (sent as well) carries the facts
    they established: country, region, sector; a partner enabling its feed
    late reads its dossiers' past from the API. The feed stops with the
    assignment's end (AssignmentEnded: the dossier was withdrawn or closed):
    the end itself is sent, so the partner knows the dossier left its
    caseload; nothing that happened after it is. Deciding on the event's own
    time, not on when the job happens to read it, gives the same feed whatever
    the job's lag.
    The job looks only once an event is `feed_settle_seconds` old (2 s): a
    save stamped before the event (an assignment, its end, an enablement)
    that reached the store after the event reached the job would otherwise
    be missed, and a visit logged just after the end sent. It assumes a save
    commits within that time of its stamp (milliseconds, in practice). Times
    are the services' clocks: on one host, one clock; in a cluster, keep them
    synchronised.

Minimised
    Only the event types in `SHARED` (`shared/partner_share.py`, which the
    APIs also answer partners with) are published, each with only the fields
    listed there, and only to the roles listed there: an allow-list, so a new
    event type or field stays private until someone decides a partner needs
    it. Free text (justifications, observations, descriptions), people (the
    promoter's pseudonym and ciphertext, officers' user ids, payees) and
    internal references never leave.

Effectively once
    One Kafka transaction per batch holds the records published and the input
    offsets consumed (`send_offsets_to_transaction`): both commit, or neither.
    A job killed mid-batch leaves an open transaction, which the next job
    aborts when it starts (same transactional id); it resumes from the offsets
    committed with the last complete batch. A partner reading with
    `isolation_level=read_committed` sees every event once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ProducerFenced, TopicAlreadyExistsError

from services.partners.domain import Assignment, Partner
from shared.envelope import CONTENT_TYPE, canonical_json
from shared.partner_share import BOTH, LOCAL_OPERATOR, SHARED, SUPPORT_STRUCTURE, Share  # noqa: F401 (the feed's)
from shared.settings import Settings
from shared.topics import FOREVER, SERVICES, event_topic, partner_feed_topic

log = logging.getLogger(__name__)

FEED_SOURCE = "/passerelle/partners/feed"
# The feed job's transactional id and consumer group (behind the topic prefix).
FEED_NAME = "passerelle-partners-feed"
FENCED_BACKOFF_SECONDS = 30.0
FEED_PARTITIONS = 3
FEED_TOPIC_CONFIG = {"retention.ms": FOREVER, "retention.bytes": "-1", "cleanup.policy": "delete"}


def share_of(event: dict[str, Any]) -> Share | None:
    """What partners receive of this CloudEvent, None when it is not for partners."""
    _, service, name, _ = event["type"].split(".", 3)  # passerelle.<service>.<Name>.v<N>
    return SHARED.get(f"{service}.{name}")


def dossier_of(event: dict[str, Any]) -> str:
    """The dossier an event is about: its `project_id`, else its subject (intake's projects,
    partners' assignments, funding's and followup's dossiers all take the project's id)."""
    return str(event["data"].get("project_id") or event["subject"])


def minimised(event: dict[str, Any], share: Share, role: str) -> bytes:
    """The partner's CloudEvent: the original's id, type, time and subject, the shared data only.

    `source` says it comes from the partner feed and `origin` which service it came from;
    the original's log position, leaf hash, actor and causation stay inside Passerelle.
    Canonical JSON, so the same event always gives the same bytes.
    """
    data = event["data"]
    return canonical_json({
        "specversion": "1.0",
        "id": event["id"],
        "source": FEED_SOURCE,
        "type": event["type"],
        "subject": event["subject"],
        "time": event["time"],
        "datacontenttype": "application/json",
        "data": {field: data[field] for field in share.fields if field in data},
        "origin": event["source"],
        "projectid": dossier_of(event),
        "partnerrole": role,
        "correlationid": event.get("correlationid") or dossier_of(event),
    })


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Audience:
    """Which partners may receive an event about a dossier, as partners' store knows it.

    Facts that never change once true are kept (a dossier's partners once assigned, its
    assignment once ended, a feed once enabled); anything not yet true is asked again, so an
    assignment or an enablement counts from the next event on. An end not yet known is asked
    at most once per dossier per batch (`new_batch`): a batch of many events about one dossier
    reads its assignment once, not once per event.
    """

    def __init__(self, app: Any):
        self.app = app
        self._assigned: dict[str, tuple[datetime, list[tuple[str, str]]]] = {}
        self._ended_at: dict[str, datetime] = {}
        self._read_this_batch: set[str] = set()  # dossiers whose assignment was read in this batch
        self._enabled_at: dict[str, datetime] = {}

    def new_batch(self) -> None:
        """A new batch of the job: an end not known yet may be asked again."""
        self._read_this_batch.clear()

    def of(self, dossier: str, happened_at: datetime, before_assignment: bool = False) -> list[tuple[str, str]]:
        """(partner id, role) of every partner of the dossier whose feed covers an event at that time."""
        assignment = self._assignment(dossier)
        if assignment is None:
            return []
        assigned_at, partners = assignment
        if happened_at < assigned_at and not before_assignment:
            return []
        ended_at = self._end(dossier)
        # The end itself still goes out (the partner learns the dossier left its caseload);
        # nothing after it.
        if ended_at is not None and happened_at > ended_at:
            return []
        audience = []
        for partner_id, role in partners:
            enabled_at = self._feed_enabled_at(partner_id)
            if enabled_at is not None and happened_at >= enabled_at:
                audience.append((partner_id, role))
        return audience

    def _assignment(self, dossier: str) -> tuple[datetime, list[tuple[str, str]]] | None:
        """When the dossier got its partners, and who they are; None while it has none."""
        if dossier in self._assigned:
            return self._assigned[dossier]
        try:
            self._read(dossier)
        except ValueError:  # not a dossier id
            return None
        return self._assigned.get(dossier)  # None: not (yet) assigned, ask again next time

    def _end(self, dossier: str) -> datetime | None:
        """When the dossier's assignment ended; None while it has not (as far as this batch knows)."""
        if dossier not in self._ended_at and dossier not in self._read_this_batch:
            self._read(dossier)
        return self._ended_at.get(dossier)

    def _read(self, dossier: str) -> None:
        """Read the dossier's assignment from the store and keep what is true for good."""
        self._read_this_batch.add(dossier)
        for e in self.app.events.get(UUID(dossier)):
            if isinstance(e, Assignment.PartnersAssigned):
                partners = [(e.support_structure_id, SUPPORT_STRUCTURE), (e.local_operator_id, LOCAL_OPERATOR)]
                self._assigned[dossier] = (e.timestamp, partners)
            elif isinstance(e, Assignment.AssignmentEnded):  # never reopened: an end is for good
                self._ended_at[dossier] = e.timestamp

    def _feed_enabled_at(self, partner_id: str) -> datetime | None:
        if partner_id in self._enabled_at:
            return self._enabled_at[partner_id]
        for e in self.app.events.get(UUID(partner_id)):
            if isinstance(e, Partner.PartnerFeedEnabled):
                self._enabled_at[partner_id] = e.timestamp
                return e.timestamp
        return None  # not (yet) enabled: ask again next time


# An upstream record the job has read: when its event happened (None: no event at all), the
# record, its event (parsed once).
Read = tuple[datetime | None, Any, dict[str, Any] | None]
BEFORE_ANYTHING = datetime.min.replace(tzinfo=timezone.utc)


def read(record: Any) -> Read:
    try:
        event = orjson.loads(record.value)
        return _time(event["time"]), record, event
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None, record, None  # named, and skipped, where it is transformed


class CausalOrder:
    """Records held until nothing that happened before them can still be unread.

    Why it holds: an event B that follows from an event A of another service (a visit after the
    financing decision) is made after A is on Kafka, so every record before A in A's partition
    was saved before B happened. Hence, once the job has read past B's time in every partition,
    or to the partition's end as measured after it read B, it has read A too. Then B goes out,
    and what goes out is sorted by the time it happened.

    Nor does anything go out before it has `settled` (Who sees what, above).

    Each partition is released as a prefix (the offsets committed with a transaction are those
    of a prefix: a record held is read again after a restart, and one published never is).
    """

    def __init__(self) -> None:
        self.held: dict[TopicPartition, deque[Read]] = {}
        self.latest: dict[TopicPartition, datetime] = {}  # the latest time read in each partition

    def add(self, tp: TopicPartition, records: list[Read]) -> None:
        self.held.setdefault(tp, deque()).extend(records)
        times = [t for t, _, _ in records if t is not None]
        if times:
            self.latest[tp] = max(self.latest.get(tp, BEFORE_ANYTHING), *times)

    def ready(self, partitions: list[TopicPartition], read_to_end: set[TopicPartition], settled: datetime
              ) -> tuple[list[Read], dict[TopicPartition, int]]:
        """What may go out now, in the order it happened, and the offset to commit per partition.

        `read_to_end`: the partitions whose position is at their end offset, measured after
        everything held was read. `settled`: nothing that happened after it goes out yet.
        """
        watermark = min([settled, *(self.latest.get(tp, BEFORE_ANYTHING) for tp in partitions
                                     if tp not in read_to_end)])
        out: list[Read] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, held in self.held.items():
            while held and (held[0][0] or BEFORE_ANYTHING) <= watermark:
                out.append(held.popleft())
                offsets[tp] = out[-1][1].offset + 1
        out.sort(key=lambda r: r[0] or BEFORE_ANYTHING)  # stable: a partition's own order among equals
        return out, offsets

    def waiting(self, tp: TopicPartition) -> int:
        return len(self.held.get(tp, ()))

    def holding(self) -> bool:
        return any(self.held.values())


# A record for a partner's topic: (topic, key, value).
Outgoing = tuple[str, bytes, bytes]


class PartnerFeed:
    """The job: upstream records in, partners' records out, one Kafka transaction per batch.

    Reported in /readyz and /metrics as a background worker (shared.http.Worker): whether it
    runs, its lag per upstream partition, the records it read and published.
    """

    name = "partner_feed"

    def __init__(self, app: Any, settings: Settings, *, max_records: int = 200, replication: int = 1):
        self.app = app
        self.replication = replication
        self.settings = settings
        self.audience = Audience(app)
        self.topics = [settings.topic(event_topic(s)) for s in SERVICES]
        # One feed job per deployment: its transactional id fences any earlier instance, and
        # its consumer group only holds the offsets committed with each transaction.
        self.transactional_id = self.group_id = settings.topic(FEED_NAME)
        self.max_records = max_records
        self.published = 0
        self.processed = 0  # upstream records read, in committed transactions
        self.running = False
        self.lag_by_partition: dict[str, int] = {}
        self._partner_topics: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Feed until `stop` is set. After any failure the open transaction is abandoned (the next
        start aborts it) and the job starts again from the offsets of the last committed batch."""
        while not stop.is_set():
            try:
                await self._run(stop)
            except asyncio.CancelledError:
                raise
            except ProducerFenced:
                log.warning("partner feed fenced by another instance; trying again in %.0f s",
                            FENCED_BACKOFF_SECONDS)
                await self._sleep(stop, FENCED_BACKOFF_SECONDS)
            except Exception:
                log.exception("partner feed failed; restarting in 1 s")
                await self._sleep(stop, 1.0)

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _run(self, stop: asyncio.Event) -> None:
        kafka = self.settings.kafka_client_options()
        admin = AIOKafkaAdminClient(**kafka)
        producer = AIOKafkaProducer(**kafka, transactional_id=self.transactional_id, acks="all", linger_ms=5)
        consumer = AIOKafkaConsumer(**kafka, group_id=self.group_id, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest")
        try:
            await admin.start()
            # Starting the producer fences an earlier instance and completes (aborts) its open
            # transaction: only then are the committed offsets the truth to resume from.
            await producer.start()
            await consumer.start()
            partitions = await self._partitions(admin)
            consumer.assign(partitions)
            order = CausalOrder()  # from the committed offsets: nothing held survives a restart
            self.running = True
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=self.max_records)
                for tp, records in batches.items():
                    order.add(tp, [read(r) for r in records])
                if not batches and not order.holding():
                    self.lag_by_partition = dict.fromkeys(self.lag_by_partition, 0)  # idle: no request
                    continue
                # The ends measured after the fetch: what was on Kafka when the records held were read.
                ends = await consumer.end_offsets(partitions)
                positions = {tp: await consumer.position(tp) for tp in partitions}
                settled = datetime.now(timezone.utc) - timedelta(seconds=self.settings.feed_settle_seconds)
                ready, offsets = order.ready(partitions, {tp for tp in partitions if positions[tp] >= ends[tp]},
                                             settled)
                # Not fed yet: what is on Kafka beyond what was read, and what is held.
                self.lag_by_partition = {f"{tp.topic}:{tp.partition}": max(0, ends[tp] - positions[tp])
                                         + order.waiting(tp) for tp in partitions}
                self._pace(consumer, order, partitions)
                if ready:
                    await self._feed(admin, producer, ready, offsets)
        finally:
            self.running = False
            await consumer.stop()
            await producer.stop()
            await admin.close()

    def _pace(self, consumer: AIOKafkaConsumer, order: CausalOrder, partitions: list[TopicPartition]) -> None:
        """A partition holding a full batch that cannot go out yet (read ahead of the others in
        time, or not settled) is not read further until it can: the memory held is bounded. The job
        still moves on: what waits to settle only waits for the clock, and the partition the
        others wait for holds nothing."""
        paused = consumer.paused()
        for tp in partitions:
            if order.waiting(tp) >= self.max_records:
                if tp not in paused:
                    consumer.pause(tp)
            elif tp in paused:
                consumer.resume(tp)

    async def _partitions(self, admin: AIOKafkaAdminClient) -> list[TopicPartition]:
        """Every partition of the upstream topics: one job reads them all, no group rebalancing."""
        partitions = []
        for topic in await admin.describe_topics(self.topics):
            if topic["error_code"] != 0 or not topic["partitions"]:
                raise RuntimeError(f"cannot read {topic['topic']} (error {topic['error_code']})")
            partitions += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
        return sorted(partitions)

    async def _feed(self, admin: AIOKafkaAdminClient, producer: AIOKafkaProducer, ready: list[Read],
                    offsets: dict[TopicPartition, int]) -> None:
        outgoing = await asyncio.to_thread(self._transform, ready)
        await self._ensure_topics(admin, {topic for topic, _, _ in outgoing})
        async with producer.transaction():
            acks = [await producer.send(topic, value=value, key=key,
                                        headers=[("content-type", CONTENT_TYPE.encode())])
                    for topic, key, value in outgoing]
            await asyncio.gather(*acks)
            await self.before_commit(len(outgoing))
            await producer.send_offsets_to_transaction(offsets, self.group_id)
        self.published += len(outgoing)
        self.processed += len(ready)

    async def before_commit(self, count: int) -> None:
        """Called in each transaction once its records are on the broker, before the commit
        (where the crash test stops a job dead)."""

    def transform(self, records: list[Any]) -> list[Outgoing]:
        """Blocking (reads partners' store): the partners' records of upstream records, in order."""
        return self._transform([read(r) for r in records])

    def _transform(self, records: list[Read]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        self.audience.new_batch()
        for happened_at, record, event in records:
            try:
                if happened_at is None or event is None:
                    raise ValueError("no event")
                share = share_of(event)
                if share is None:
                    continue
                dossier = dossier_of(event)
            except (KeyError, TypeError, ValueError, AttributeError):
                # Not for a partner, whatever it is; it must not stop the feed of everything after it.
                log.warning("partner feed skips %s:%d:%d: not a Passerelle CloudEvent", record.topic,
                            record.partition, record.offset)
                continue
            for partner_id, role in self.audience.of(dossier, happened_at, share.before_assignment):
                if role in share.roles:
                    outgoing.append((self.settings.topic(partner_feed_topic(partner_id)), dossier.encode(),
                                     minimised(event, share, role)))
        return outgoing

    async def _ensure_topics(self, admin: AIOKafkaAdminClient, topics: set[str]) -> None:
        """Partner topics are made on first use, kept forever like every event topic."""
        for topic in sorted(topics - self._partner_topics):
            try:
                await admin.create_topics([NewTopic(topic, FEED_PARTITIONS, self.replication,
                                                    topic_configs=FEED_TOPIC_CONFIG)])
            except TopicAlreadyExistsError:
                pass
            self._partner_topics.add(topic)
