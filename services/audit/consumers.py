"""The audit's replay: every service's topic and `audit.checkpoints`, from offset 0, forever.

No consumer group and no committed offsets: the audit trusts nothing it did not
read itself, so each start reads everything again. The replay is "caught up"
when a fresh look at the end offsets finds nothing unread; only then is a
checkpoint whose events never came reported missing (a checkpoint is published
after its events are acknowledged, so they are on Kafka before it).

The work is shared between reader processes (`python -m services.audit.consumers`,
two per core by default, at most one per log, `Settings.audit_readers`): taking a record from aiokafka
costs about as much CPU as checking it, and together they are more than one core
does at the rate Kafka serves records (`make bench` measures it). The logs are independent, so
each reader owns whole logs: every partition of their topics, and their records of
`audit.checkpoints`. It is its own aiokafka consumer (no group); it checks every
record's leaf hash from its bytes (`records.read_record`), puts the records of each
log back in the order they were written (`_Order`), grows the trees, checks the
checkpoints' signatures and roots, with the same `AuditApplication` as a single
process would: nothing is checked less. It hands this process what changed
(`AuditApplication.changes`: the trees' new nodes, new problems, counts) and
funding's verified records for the ledger, as read; this process's application
takes them (`take`) to answer the auditor, without hashing anything again, and
parses only those records to keep the ledger (the readers parse no JSON).

A reader stops when its standard input ends (this process stopped it, or died).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import pickle
import struct
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.audit.records import read_record
from services.audit.projections import Ledger

if TYPE_CHECKING:  # the readers import this module: it imports nothing they do not need (they start faster)
    from services.audit.application import AuditApplication
    from shared.settings import Settings

log = logging.getLogger(__name__)

# Every aiokafka consumer of the replay: no group, from the first offset, large fetches.
CONSUMER_OPTIONS: dict[str, Any] = {
    "group_id": None, "enable_auto_commit": False, "auto_offset_reset": "earliest",
    "fetch_max_bytes": 16 * 1024 * 1024, "max_partition_fetch_bytes": 1024 * 1024,
}
# A reader's message to this process: its length, then its pickle.
_FRAME = struct.Struct(">I")
_TIMESTAMP = itemgetter(0)
# Where `services` is, for the readers' `python -m`.
_ROOT = str(Path(__file__).resolve().parents[2])


def read_partition(service: str, index: int, records: list[ConsumerRecord[Any, Any]]
                   ) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
    """What a reader finds in records of a service's topic (partition `index` of the replay): each
    as the application takes it (`domain.RECORD`), the record itself for the ledger when it is a
    verified record of funding's that the ledger may keep something of (the application that
    keeps the ledger parses it: a reader parses no JSON); and the (offset, why) of those that are
    no event of a log at all."""
    rows, unreadable = [], []
    ledger = service == "funding"
    for r in records:
        value = r.value
        try:
            sequence, leaf, event_id, matches = read_record(value)
        except ValueError as exc:
            unreadable.append((r.offset, str(exc)))
            continue
        rows.append((r.timestamp, index, r.offset, sequence, leaf, event_id, matches,
                     value if ledger and matches and _may_concern_the_ledger(value) else None))
    return rows, unreadable


def _may_concern_the_ledger(value: bytes) -> bool:
    """False when the record's type, read from its canonical bytes, is none the ledger keeps: most
    of funding's events are never parsed. True when in doubt (the ledger parses it and sees)."""
    at = value.rfind(b',"type":"passerelle.funding.')
    if at < 0:
        return True
    start = at + len(b',"type":"passerelle.funding.')
    end = value.find(b".", start)
    return end < 0 or Ledger.keeps(value[start:end].decode(errors="replace"))


@dataclass
class _Partition:
    """A partition of the replay, as far as the readers have told."""

    topic: str
    partition: int
    service: str | None  # None: audit.checkpoints
    start: int
    end: int  # the end offset last seen (replay_once: where it ended when the replay began)
    position: int
    last_timestamp: int = -1  # of the last record read

    @property
    def drained(self) -> bool:
        return self.position >= self.end


class _Order:
    """The records of each log back in the order they were written, as far as the records tell
    (their timestamps, then topic, partition and offset): when two records claim one place, the
    earlier is taken as the original.

    The readers send each partition's records in offset order, but one partition may be read
    ahead of another. A record is given out once no record still unread of its log can come
    before it: its timestamp is older than the last one read from each partition of that log
    (and of `audit.checkpoints`) that is not read to its end. Only records of the same log are
    ordered: the logs are independent. Memory: what one partition is read ahead of another.
    """

    def __init__(self, partitions: list[_Partition]):
        self.partitions = partitions  # sorted by (topic, partition): a row's index orders as they do
        checkpoints = [i for i, p in enumerate(partitions) if p.service is None]
        self.sources: dict[str, list[int]] = {}
        for i, p in enumerate(partitions):
            if p.service is not None:
                self.sources.setdefault(p.service, list(checkpoints)).append(i)
        self.checkpoints = checkpoints
        self.waiting: dict[str, dict[int, list[tuple[Any, ...]]]] = {}  # log -> partition -> rows, offset order
        self.pending = 0

    def add(self, index: int, rows: list[tuple[Any, ...]]) -> None:
        partition = self.partitions[index]
        if partition.service is None:  # a checkpoint belongs to the log its key names
            for row in rows:
                service = (row[3] or b"").decode(errors="replace")
                self.waiting.setdefault(service, {}).setdefault(index, []).append(row)
        else:
            self.waiting.setdefault(partition.service, {}).setdefault(index, []).extend(rows)
        partition.last_timestamp = rows[-1][0]
        self.pending += len(rows)

    def ready(self) -> list[tuple[str, list[tuple[Any, ...]], list[int]]]:
        """The rows that can be applied now: per log, in the order written, and where its
        checkpoints are among them."""
        out: list[tuple[str, list[tuple[Any, ...]], list[int]]] = []
        for service, queues in self.waiting.items():
            sources = self.sources.get(service, self.checkpoints)
            bound = min((self.partitions[i].last_timestamp for i in sources if not self.partitions[i].drained),
                        default=None)
            taken: list[tuple[Any, ...]] = []
            checkpoints: list[tuple[Any, ...]] = []
            for index, rows in queues.items():
                cut = len(rows) if bound is None else bisect.bisect_left(rows, bound, key=_TIMESTAMP)
                if cut:
                    if self.partitions[index].service is None:
                        checkpoints += rows[:cut]
                    taken += rows[:cut]
                    del rows[:cut]
            if taken:
                taken.sort()  # (timestamp, partition index, offset, ...): runs already sorted, a merge
                # Rows are unique by (partition index, offset): each checkpoint found by bisection.
                out.append((service, taken, sorted(bisect.bisect_left(taken, row) for row in checkpoints)))
                self.pending -= len(taken)
        return out


def _shares(partitions: list[_Partition], indexes: list[int], readers: int) -> list[tuple[list[str], list[int]]]:
    """The logs among the readers, the largest first to the least loaded: (services, partition
    indexes) per reader, every reader with the partitions of `audit.checkpoints` too."""
    sizes: dict[str, int] = {}
    for i in indexes:
        if partitions[i].service is not None:
            sizes[partitions[i].service] = sizes.get(partitions[i].service, 0) + partitions[i].end - partitions[i].start
    checkpoints = [i for i in indexes if partitions[i].service is None]
    loads: list[tuple[int, list[str]]] = [(0, []) for _ in range(max(1, min(readers, len(sizes))))]
    for service in sorted(sizes, key=lambda s: -sizes[s]):
        load, share = min(loads, key=itemgetter(0))
        share.append(service)
        loads[loads.index((load, share))] = (load + sizes[service], share)
    if not sizes and not checkpoints:
        return []
    return [(share, sorted([i for i in indexes if partitions[i].service in share] + checkpoints))
            for _, share in loads]


def apply_ready(app: AuditApplication, partitions: list[_Partition],
                ready: list[tuple[str, list[tuple[Any, ...]], list[int]]]) -> None:
    """Rows put in order (`_Order.ready`) to the application: each log's records, a checkpoint
    after what was written before it."""
    def where(row: tuple[Any, ...]) -> str:
        partition = partitions[row[1]]
        return f"{partition.topic}:{partition.partition}:{row[2]}"

    for service, rows, checkpoints in ready:
        start = 0
        for i in checkpoints:
            app.record_read(service, rows[start:i], where)  # what was written before the checkpoint first
            start = i + 1
            app.record_checkpoint(rows[i][3], rows[i][4], where(rows[i]))  # key, value
        app.record_read(service, rows[start:], where)


class Replay:
    def __init__(self, app: AuditApplication, settings: Settings, *, batch: int = 5000, readers: int | None = None):
        from shared.topics import CHECKPOINTS_TOPIC, SERVICES, event_topic

        self.app = app
        self.settings = settings
        self.batch = batch
        # Two per core by default: the logs are not equally costly (funding's decisions feed the
        # ledger), and the system balances more processes than cores better than we would.
        self.readers = readers or settings.audit_readers or 2 * (os.cpu_count() or 1)
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

    async def replay_once(self, progress: Callable[[dict[str, tuple[int, int]]], None] | None = None) -> None:
        """Read every topic up to where it ends now, checked to the end, then return (the command
        line). `progress` gets, per topic, (records read, records to read)."""
        async with self._from_the_start(until_end=True) as (partitions, frames, readers):
            ended: set[int] = set()
            while len(ended) < readers:
                if progress:
                    progress(self._progress(partitions))
                number, frame = await frames.get()
                if number in ended:
                    continue  # its output closing after its last message
                if await asyncio.to_thread(self._take, partitions, number, frame) == "end":
                    ended.add(number)
            if progress:
                progress(self._progress(partitions))

    async def _replay(self, stop: asyncio.Event) -> None:
        async with self._from_the_start(until_end=False) as (partitions, frames, readers):
            self.running = True
            self.caught_up.clear()
            caught_up: dict[int, bool] = {number: False for number in range(readers)}
            try:
                while not stop.is_set():
                    try:
                        number, frame = await asyncio.wait_for(frames.get(), 0.2)
                    except TimeoutError:
                        if readers:
                            continue
                        number, frame = -1, None  # nothing to read: caught up at once
                    if number >= 0:
                        # "idle": the reader read all there is, checked it and settled its logs.
                        caught_up[number] = await asyncio.to_thread(self._take, partitions, number, frame) == "idle"
                    for p in partitions:
                        self.lag_by_partition[f"{p.topic}:{p.partition}"] = max(0, p.end - p.position)
                    if self.lag == 0 and all(caught_up.values()):
                        self.caught_up.set()
            finally:
                self.running = False

    @contextlib.asynccontextmanager
    async def _from_the_start(self, *, until_end: bool
                              ) -> AsyncIterator[tuple[list[_Partition], asyncio.Queue[tuple[int, bytes | None]], int]]:
        """Every partition, the readers started on their logs from offset 0, the audit's state
        forgotten. Yields the partitions, the readers' messages and how many readers there are."""
        processes: list[asyncio.subprocess.Process] = []
        frames: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue(maxsize=2 * self.readers + 2)
        pumps: list[asyncio.Task[None]] = []
        try:
            # The readers start (Python, aiokafka) while the broker is asked where the partitions end.
            for _ in range(self.readers):
                processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "services.audit.consumers", stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, env=_reader_environment(), limit=8 * 1024 * 1024))
            partitions = await self._partitions()
            indexes = [i for i, p in enumerate(partitions) if not (until_end and p.drained)]
            shares = _shares(partitions, indexes, self.readers) if indexes else []
            owned = [service for services, _ in shares for service in services]
            for number, process in enumerate(processes):
                assert process.stdin is not None
                if number >= len(shares):
                    process.stdin.close()  # more readers than logs to read: this one stops
                    continue
                services, share = shares[number]
                # Its configuration (with the Kafka credentials) on its standard input, not its command line.
                process.stdin.write(json.dumps({
                    "client": self.settings.kafka_client_options(), "batch": self.batch, "until_end": until_end,
                    # The first reader also takes the checkpoints of logs no reader owns (a key forged or unknown).
                    "services": services, "owned": owned, "strangers": number == 0,
                    "keys": {name: key.hex() for name, key in self.app.keys.items()},
                    "partitions": [[i, partitions[i].topic, partitions[i].partition, partitions[i].service,
                                    partitions[i].start, partitions[i].end] for i in share],
                }).encode() + b"\n")
                await process.stdin.drain()
                pumps.append(asyncio.create_task(_pump(number, process, frames)))
            self.app.reset()
            self.processed = 0
            yield partitions, frames, len(shares)
        finally:
            for pump in pumps:
                pump.cancel()
            for process in processes:
                if process.stdin is not None:
                    process.stdin.close()  # the reader stops
            try:
                for process in processes:
                    try:
                        await asyncio.wait_for(process.wait(), 10)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
            finally:  # cancelled meanwhile: no reader is left behind
                for process in processes:
                    if process.returncode is None:
                        process.kill()

    async def _partitions(self) -> list[_Partition]:
        """Every partition of the topics the broker has (a service not started yet has none), with
        where it begins and ends now, sorted by topic and partition."""
        from aiokafka import errors as Errors
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**self.settings.kafka_client_options())
        await admin.start()
        try:
            described = await admin.describe_topics(self.topics)
        finally:
            await admin.close()
        # A topic the broker does not have (yet: a service never started) is no log to check. Any
        # other answer (the audit's principal may not describe it, ...) stops the replay: a log
        # left unread must never pass for a verified one.
        refused = [f"{d['topic']} ({Errors.for_code(d['error_code']).__name__})" for d in described
                   if d["error_code"] not in (0, Errors.UnknownTopicOrPartitionError.errno)]
        if refused:
            raise RuntimeError(f"the audit cannot read {', '.join(refused)}: without them nothing is verified")
        missing = [d["topic"] for d in described if d["error_code"] or not d["partitions"]]
        if missing:
            log.warning("audit: topics not on the broker (yet): %s", ", ".join(missing))
        tps = sorted(TopicPartition(d["topic"], p["partition"]) for d in described if d["topic"] not in missing
                     for p in d["partitions"])
        if not tps:
            return []
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options(), **CONSUMER_OPTIONS)
        await consumer.start()
        try:
            starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        return [_Partition(tp.topic, tp.partition, self.services.get(tp.topic), starts[tp], ends[tp], starts[tp])
                for tp in tps]

    def _take(self, partitions: list[_Partition], number: int, frame: bytes | None) -> str:
        """A reader's message: where its partitions are, what its logs learnt."""
        if frame is None:
            raise RuntimeError(f"audit reader {number} stopped before the end")
        kind, changes, states = pickle.loads(frame)
        if kind == "error":
            raise RuntimeError(f"audit reader {number} failed:\n{changes}")
        for index, position, end in states:
            partition = partitions[index]
            self.processed += max(0, position - partition.position)
            partition.position, partition.end = position, end
        self.app.take(changes)
        return kind

    @staticmethod
    def _progress(partitions: list[_Partition]) -> dict[str, tuple[int, int]]:
        done: dict[str, tuple[int, int]] = {}
        for p in partitions:
            read, total = done.get(p.topic, (0, 0))
            done[p.topic] = (read + min(p.position, p.end) - p.start, total + p.end - p.start)
        return done


def _reader_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}


async def _pump(number: int, process: asyncio.subprocess.Process,
                frames: asyncio.Queue[tuple[int, bytes | None]]) -> None:
    """A reader's messages into the queue; None when its output ends. The queue is bounded: a reader
    ahead of this process waits (its pipe fills)."""
    assert process.stdout is not None
    try:
        while True:
            (size,) = _FRAME.unpack(await process.stdout.readexactly(_FRAME.size))
            await frames.put((number, await process.stdout.readexactly(size)))
    except asyncio.IncompleteReadError:
        await frames.put((number, None))


# --- a reader process -----------------------------------------------------------------------


def _send(out: Any, message: tuple[str, Any, Any]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(data)))
    out.write(data)
    out.flush()


async def _read(config: dict[str, Any], out: Any) -> None:
    """Read the partitions of a few logs from their first offset, check them, send what changed.
    Each message: (kind, the logs' and ledger's changes, every partition's (index, position, end));
    kind "state", "idle" (all read there is is checked and the logs settled: the replay has caught
    up) or "end" (until_end: read to where the partitions ended when the replay began)."""
    from services.audit.application import AuditApplication

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def until_stdin_ends() -> None:
        while os.read(0, 4096):  # unbuffered: sys.stdin's lock would stall the interpreter's exit
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=until_stdin_ends, daemon=True).start()
    app = AuditApplication(None, keys={name: bytes.fromhex(key) for name, key in config["keys"].items()},  # type: ignore[arg-type]
                           keeps_ledger=False)
    marks: dict[str, Any] = {}
    services, owned, strangers = set(config["services"]), set(config["owned"]), config["strangers"]
    # This reader's partitions, in the replay's order (topic, partition): rows carry their place here.
    partitions = [_Partition(topic, partition, service, start, end, start)
                  for _, topic, partition, service, start, end in config["partitions"]]
    numbers = [index for index, *_ in config["partitions"]]
    places = {TopicPartition(p.topic, p.partition): i for i, p in enumerate(partitions)}
    tps = list(places)
    order = _Order(partitions)
    consumer = AIOKafkaConsumer(**config["client"], **CONSUMER_OPTIONS)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        def states() -> list[tuple[int, int, int]]:
            return [(numbers[i], p.position, p.end) for i, p in enumerate(partitions)]

        def mine(key: bytes | None) -> bool:  # a checkpoint of one of this reader's logs
            service = (key or b"").decode(errors="replace")
            return service in services or (strangers and service not in owned)

        while not stop.is_set():
            if config["until_end"] and all(p.drained for p in partitions):
                apply_ready(app, partitions, order.ready())
                app.settle()
                _send(out, ("end", app.changes(marks), states()))
                return
            batches = await consumer.getmany(timeout_ms=200, max_records=config["batch"])
            for tp, i in places.items():  # where each partition is now, read once a turn
                partitions[i].position = await consumer.position(tp)
            if batches:
                for tp, records in batches.items():
                    i = places[tp]
                    service = partitions[i].service
                    if service is None:
                        rows = [(r.timestamp, i, r.offset, r.key, r.value) for r in records if mine(r.key)]
                    else:
                        rows, unreadable = read_partition(service, i, records)
                        for offset, why in unreadable:
                            app.record_unreadable(service, f"{tp.topic}:{tp.partition}:{offset}", why)
                    if rows:
                        order.add(i, rows)
                    partitions[i].last_timestamp = records[-1].timestamp
                    if not config["until_end"]:
                        partitions[i].end = max(partitions[i].end, consumer.highwater(tp) or 0)
                apply_ready(app, partitions, order.ready())
                _send(out, ("state", app.changes(marks), states()))
            elif not config["until_end"]:  # nothing came: a fresh look at where the partitions end
                for tp, end in (await consumer.end_offsets(tps)).items():
                    partitions[places[tp]].end = end
                idle = all(p.drained for p in partitions)
                if idle:  # all there is is read: what is still waiting is missing
                    apply_ready(app, partitions, order.ready())
                    app.settle()
                _send(out, ("idle" if idle else "state", app.changes(marks), states()))
    finally:
        await consumer.stop()


def _reader_main() -> None:
    logging.basicConfig(level=logging.WARNING, format="audit reader %(process)d: %(levelname)s %(message)s")
    line = sys.stdin.buffer.readline()
    if not line:
        return  # not needed
    config = json.loads(line)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # the messages alone on stdout
    try:
        asyncio.run(_read(config, out))
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the audit is gone
    except Exception:
        with contextlib.suppress(BrokenPipeError):
            _send(out, ("error", traceback.format_exc(), []))
        sys.exit(1)


if __name__ == "__main__":
    _reader_main()
