"""A service's event store: the eventsourcing library's Application, recorders and mapper.

What Passerelle adds to the library, and why:

- Every stored event carries `_meta` (actor, correlation, causation, W3C
  traceparent, code version) taken from the command context, so that the
  CloudEvent published later is built from stored data only and an auditor
  can tell who caused what under which code (`MetadataMapper`).
- The recorder is the library's *process* recorder: a consumer's tracking
  record (upstream topic:partition, offset) commits in the same transaction as
  the events the record caused (`processing`).
- `Idempotency-Key` rows are written by the recorder in that same transaction,
  so a replayed request can never write twice (`idempotent`).
"""

from __future__ import annotations

import contextvars
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Mapper, Notification, StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier
from eventsourcing.sqlite import SQLiteProcessRecorder
from eventsourcing.utils import get_topic

from shared.domain import NotFound
from shared.settings import Settings
from shared.telemetry import traced

META = "_meta"
T = TypeVar("T")


@dataclass(frozen=True)
class CommandContext:
    """Who and what caused the events about to be saved."""

    actor: str = "service:unknown"
    # The partner organisation on whose behalf the actor (always a human or a service) acts, if any.
    partner_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


@dataclass
class _Processing:
    tracking: Tracking | None
    extra: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False


@dataclass
class _Idempotency:
    key: str
    fingerprint: str
    recorded: bool = False
    aggregate_id: str | None = None


_context: contextvars.ContextVar[CommandContext] = contextvars.ContextVar("command_context", default=CommandContext())
_processing: contextvars.ContextVar[_Processing | None] = contextvars.ContextVar("processing", default=None)
_idempotency: contextvars.ContextVar[_Idempotency | None] = contextvars.ContextVar("idempotency", default=None)


@contextmanager
def acting(context: CommandContext) -> Iterator[None]:
    """Events saved inside the block carry `context` in their metadata."""
    token = _context.set(context)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> CommandContext:
    return _context.get()


@contextmanager
def processing(tracking: Tracking | None, **extra: Any) -> Iterator[_Processing]:
    """The single save inside the block records `tracking` (and `extra` side rows) in its transaction."""
    state = _Processing(tracking, extra)
    token = _processing.set(state)
    try:
        yield state
    finally:
        _processing.reset(token)


@contextmanager
def idempotent(key: str, fingerprint: str) -> Iterator[_Idempotency]:
    """The save inside the block records the idempotency key in the same transaction."""
    state = _Idempotency(key, fingerprint)
    token = _idempotency.set(state)
    try:
        yield state
    finally:
        _idempotency.reset(token)


@cache
def code_version() -> str:
    """The package version and git commit, recorded with every event."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("passerelle")
    except PackageNotFoundError:  # pragma: no cover
        package = "0"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, cwd=__file__.rsplit("/", 2)[0],
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{package}+{commit}" if commit else package


class MetadataMapper(Mapper):
    """The library's mapper, plus the command context stored with each event."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = get_topic(domain_event.__class__)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        if META not in state:  # a stored event keeps its first metadata (snapshots, re-saves)
            ctx = _context.get()
            state[META] = {
                "actor": ctx.actor,
                "correlationid": ctx.correlation_id or str(originator_id),
                "causationid": ctx.causation_id,
                "traceparent": ctx.traceparent,
                "codeversion": code_version(),
            }
            if ctx.partner_id is not None:
                state[META]["partner_id"] = ctx.partner_id
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(originator_id, originator_version, topic, stored_state)


def event_metadata(domain_event: Any) -> dict[str, Any]:
    return dict(vars(domain_event).get(META) or {})


# --- recorders: the library's process recorders, plus side tables written in the same transaction ---


@dataclass(frozen=True)
class ParkedRecord:
    """An upstream Kafka record a consumer could not process, kept for a later retry."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]
    error: str
    status: str = "parked"


class _SideTables:
    """SQL shared by both recorders: idempotency keys, parked records, log positions.

    Rows are written by `_insert_events`, inside the library's own transaction, from
    keyword arguments of `save()`: `idempotency=`, `park=`, `resolve=`, `data_keys=`,
    `erase_keys=`, `identifiers=`, `identifiers_read=`, `erase_identifiers=`.
    """

    ph = "?"
    events_table_name: str
    prefix = ""

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}idempotency"

    @property
    def parked_table(self) -> str:
        return f"{self.prefix}parked"

    @property
    def data_keys_table(self) -> str:
        return f"{self.prefix}data_keys"

    @property
    def identifiers_table(self) -> str:
        return f"{self.prefix}person_identifiers"

    @property
    def log_tree_table(self) -> str:
        return f"{self.prefix}log_tree"

    def side_table_statements(self) -> list[str]:
        blob = "BYTEA" if self.ph == "%s" else "BLOB"
        return [
            f"CREATE TABLE IF NOT EXISTS {self.idempotency_table} ("
            " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, aggregate_id TEXT, response TEXT)",
            f"CREATE TABLE IF NOT EXISTS {self.parked_table} ("
            " topic TEXT NOT NULL, part INTEGER NOT NULL, record_offset BIGINT NOT NULL, record_key TEXT NOT NULL,"
            f" value {blob} NOT NULL, headers TEXT NOT NULL, error TEXT NOT NULL, status TEXT NOT NULL,"
            " PRIMARY KEY (topic, part, record_offset))",
            # Per-person data keys (wrapped): deleting one erases that person's data everywhere.
            f"CREATE TABLE IF NOT EXISTS {self.data_keys_table} (key_id TEXT PRIMARY KEY, wrapped {blob} NOT NULL)",
            # Keyed hashes of a person's identifiers, to find possible duplicates; erased with the key.
            f"CREATE TABLE IF NOT EXISTS {self.identifiers_table} ("
            " person_id TEXT NOT NULL, kind TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (person_id, kind, digest))",
            f"CREATE INDEX IF NOT EXISTS {self.identifiers_table}_digest ON {self.identifiers_table} (digest)",
            # The relay's Merkle tree of the published log (compact form), kept with its position.
            f"CREATE TABLE IF NOT EXISTS {self.log_tree_table} (name TEXT PRIMARY KEY, tree TEXT NOT NULL)",
        ]

    def _write_side_rows(self, curs: Any, kwargs: dict[str, Any]) -> None:
        p = self.ph
        record: _Idempotency | None = kwargs.get("idempotency")
        if record is not None:
            curs.execute(
                f"INSERT INTO {self.idempotency_table} (key, fingerprint, aggregate_id) VALUES ({p}, {p}, {p})",
                (record.key, record.fingerprint, record.aggregate_id),
            )
        for key_id, wrapped in kwargs.get("data_keys", ()):
            curs.execute(f"INSERT INTO {self.data_keys_table} (key_id, wrapped) VALUES ({p}, {p})", (key_id, wrapped))
        for key_id in kwargs.get("erase_keys", ()):
            curs.execute(f"DELETE FROM {self.data_keys_table} WHERE key_id = {p}", (key_id,))
        if "identifiers_read" in kwargs:
            self._require_identifiers_as_read(curs, kwargs.get("identifiers", ()), kwargs["identifiers_read"])
        for person_id, kind, digest in kwargs.get("identifiers", ()):
            curs.execute(f"INSERT INTO {self.identifiers_table} (person_id, kind, digest) VALUES ({p}, {p}, {p})"
                         " ON CONFLICT DO NOTHING", (person_id, kind, digest))
        for person_id in kwargs.get("erase_identifiers", ()):
            curs.execute(f"DELETE FROM {self.identifiers_table} WHERE person_id = {p}", (person_id,))
        park: ParkedRecord | None = kwargs.get("park")
        if park is not None:
            curs.execute(
                f"INSERT INTO {self.parked_table} VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, 'parked')"
                " ON CONFLICT DO NOTHING",
                (park.topic, park.partition, park.offset, park.key, park.value,
                 json.dumps([[k, v.decode("latin-1")] for k, v in park.headers]), park.error),
            )
        resolve: ParkedRecord | None = kwargs.get("resolve")
        if resolve is not None:
            curs.execute(
                f"UPDATE {self.parked_table} SET status = 'retried'"
                f" WHERE topic = {p} AND part = {p} AND record_offset = {p} AND status = 'parked' RETURNING 1",
                (resolve.topic, resolve.partition, resolve.offset),
            )
            # RETURNING rather than rowcount: PostgreSQL runs this in pipeline mode.
            if curs.fetchone() is None:
                raise IntegrityError(f"parked record {resolve.topic}:{resolve.partition}:{resolve.offset} already retried")

    def _require_identifiers_as_read(self, curs: Any, identifiers: Any, read: list[tuple[str, str]]) -> None:
        """Refuse the save (IntegrityError: the command decides again) when a person record with one of
        these identifiers was saved since the command read `read`, the (person_id, kind) matches then.

        Two dossiers of one identity taken in at the same moment would otherwise each miss the other's
        record. Under a lock on each digest, held to the end of the transaction, the second one reads
        what the first wrote and is taken in again, flagged.
        """
        digests = sorted({digest for _, _, digest in identifiers})
        if not digests:
            return
        self._lock_digests(curs, digests)
        marks = ", ".join([self.ph] * len(digests))
        curs.execute(f"SELECT DISTINCT person_id, kind FROM {self.identifiers_table} WHERE digest IN ({marks})",
                     tuple(digests))
        now = {tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in curs.fetchall()}
        if not now <= {tuple(match) for match in read}:
            raise IntegrityError("a person record with matching identifiers was saved meanwhile")

    def _lock_digests(self, curs: Any, digests: list[str]) -> None:
        """SQLite has one writer at a time: its write transaction is the lock."""

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def find_idempotency(self, key: str) -> tuple[str, str | None, str | None] | None:
        rows = self._rows(
            f"SELECT fingerprint, aggregate_id, response FROM {self.idempotency_table} WHERE key = {self.ph}", (key,)
        )
        return rows[0] if rows else None  # type: ignore[return-value]

    def complete_idempotency(self, key: str, response: str) -> None:
        self._run(f"UPDATE {self.idempotency_table} SET response = {self.ph} WHERE key = {self.ph}", (response, key))

    def parked_records(self, topic: str | None = None, status: str = "parked") -> list[ParkedRecord]:
        sql = f"SELECT topic, part, record_offset, record_key, value, headers, error, status FROM {self.parked_table} WHERE status = {self.ph}"
        params: tuple[Any, ...] = (status,)
        if topic is not None:
            sql += f" AND topic = {self.ph}"
            params += (topic,)
        rows = self._rows(sql + " ORDER BY topic, part, record_offset", params)
        return [
            ParkedRecord(r[0], r[1], r[2], r[3], bytes(r[4]), [(k, v.encode("latin-1")) for k, v in json.loads(r[5])], r[6], r[7])
            for r in rows
        ]

    def find_data_key(self, key_id: str) -> bytes | None:
        rows = self._rows(f"SELECT wrapped FROM {self.data_keys_table} WHERE key_id = {self.ph}", (key_id,))
        return bytes(rows[0][0]) if rows else None

    def delete_data_key(self, key_id: str) -> None:
        self._run(f"DELETE FROM {self.data_keys_table} WHERE key_id = {self.ph}", (key_id,))

    def indexed_persons(self) -> set[str]:
        return {r[0] for r in self._rows(f"SELECT DISTINCT person_id FROM {self.identifiers_table}", ())}

    def add_identifiers(self, person_id: str, identifiers: list[tuple[str, str]]) -> None:
        """Store a person's identifiers' hashes outside a save, only while the person still has a key
        (a person forgotten meanwhile keeps none)."""
        p = self.ph
        for kind, digest in identifiers:
            self._run(f"INSERT INTO {self.identifiers_table} (person_id, kind, digest) SELECT {p}, {p}, {p}"
                      f" WHERE EXISTS (SELECT 1 FROM {self.data_keys_table} WHERE key_id = {p}) ON CONFLICT DO NOTHING",
                      (person_id, kind, digest, person_id))

    def find_identifiers(self, digests: list[str]) -> list[tuple[str, str]]:
        """(person_id, kind) of every stored identifier with one of these digests."""
        if not digests:
            return []
        marks = ", ".join([self.ph] * len(digests))
        return [(r[0], r[1]) for r in self._rows(
            f"SELECT DISTINCT person_id, kind FROM {self.identifiers_table} WHERE digest IN ({marks})", tuple(digests))]

    def _write_log_tree(self, curs: Any, name: str, tree: str) -> None:
        p = self.ph
        curs.execute(f"INSERT INTO {self.log_tree_table} (name, tree) VALUES ({p}, {p})"
                     f" ON CONFLICT (name) DO UPDATE SET tree = excluded.tree", (name, tree))

    def log_tree(self, name: str) -> str | None:
        rows = self._rows(f"SELECT tree FROM {self.log_tree_table} WHERE name = {self.ph}", (name,))
        return rows[0][0] if rows else None

    def count_notifications(self, up_to: int) -> int:
        """How many notifications have ids <= up_to: the `sequence` of the next one."""
        column = "notification_id" if self.ph == "%s" else "rowid"
        return int(self._rows(f"SELECT COUNT(*) FROM {self.events_table_name} WHERE {column} <= {self.ph}", (up_to,))[0][0])


class PostgresRecorder(_SideTables, PostgresProcessRecorder):
    ph = "%s"

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events", tracking_table_name: str = "notification_tracking"):
        super().__init__(datastore, events_table_name=events_table_name, tracking_table_name=tracking_table_name)
        self.prefix = events_table_name.removesuffix("events")
        self.sql_create_statements.extend(SQL(statement) for statement in self.side_table_statements())
        self._log_after_statement = SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state FROM {0}.{1}"
            " WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))

    def _insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
        self._write_side_rows(curs, kwargs)
        super()._insert_events(curs, stored_events, **kwargs)

    def _lock_digests(self, curs: Any, digests: list[str]) -> None:
        # Sorted, so that two transactions wait for each other rather than deadlock.
        for digest in digests:
            curs.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (digest,))

    def log_after(self, after: int, limit: int) -> list[Notification]:
        """The relay's read: `select_notifications` with plain rows and the aggregate id as text
        (the library's dict rows and UUID objects cost more than the relay's own work)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._log_after_statement, (after, limit), prepare=True, binary=True)  # bytea as is, not hex
            return [Notification(id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3], state=r[4])
                    for r in curs.fetchall()]

    def insert_position(self, tracking: Tracking, tree: str | None = None) -> None:
        """Record a relay position (and its log's tree) without waiting for the WAL flush.

        Safe because a position is only a hint of where to resume: if a crash loses
        the last one, the relay re-publishes those events, as the same bytes; the tree
        commits with the position, so it always matches it.
        """
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SET LOCAL synchronous_commit TO OFF")
            self._insert_tracking(curs, tracking)
            if tree is not None:
                self._write_log_tree(curs, tracking.application_name, tree)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql, params)
            return [tuple(r.values()) for r in curs.fetchall()]

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(sql, params)


class SQLiteRecorder(_SideTables, SQLiteProcessRecorder):
    ph = "?"

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + self.side_table_statements()

    def _insert_events(self, c: Any, stored_events: Any, **kwargs: Any) -> Any:
        self._write_side_rows(c, kwargs)
        return super()._insert_events(c, stored_events, **kwargs)

    def log_after(self, after: int, limit: int) -> list[Notification]:
        """The relay's read: the notifications after `after`, oldest first."""
        return list(self.select_notifications(after, limit, None, (), inclusive_of_start=False))

    def insert_position(self, tracking: Tracking, tree: str | None = None) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._insert_tracking(c, tracking)
            if tree is not None:
                self._write_log_tree(c, tracking.application_name, tree)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(sql, params)


class ServiceApplication(Application[UUID]):
    """A service's event-sourced application, its store chosen by the environment.

    Subclasses add the commands (domain verbs) and queries of one service.
    """

    # The service's name, also the library's application name: PostgreSQL tables
    # <name>_events and <name>_tracking.
    name: ClassVar[str]

    def __init__(self, settings: Settings):
        self.settings = settings
        env = settings.eventsourcing_env()
        env["MAPPER_TOPIC"] = get_topic(MetadataMapper)
        env["PROCESS_RECORDER_TOPIC"] = get_topic(
            PostgresRecorder if settings.persistence == "postgres" else SQLiteRecorder
        )
        self._save_listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        super().__init__(env=env)

    def construct_recorder(self) -> Any:
        return self.factory.process_recorder()

    def on_save(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every save (wakes the relay and projectors in this process)."""
        with self._listeners_lock:
            self._save_listeners.append(listener)

    @traced("eventstore save")
    def save(self, *objs: Any, **kwargs: Any) -> Any:
        tracking = None
        state = _processing.get()
        if state is not None:
            if state.recorded:
                raise RuntimeError("a processed record may cause one save only: save all aggregates together")
            tracking, state.recorded = state.tracking, True
            kwargs.update(state.extra)
        record = _idempotency.get()
        if record is not None and not record.recorded:
            record.recorded = True
            if objs and getattr(objs[0], "id", None) is not None:
                record.aggregate_id = str(objs[0].id)
            kwargs["idempotency"] = record
        processing_event: ProcessingEvent[UUID] = ProcessingEvent(tracking=tracking)
        processing_event.collect_events(*objs, **kwargs)
        try:
            recordings = self._record(processing_event)
        except BaseException:
            # The transaction wrote nothing: a command that loads again and retries must
            # record its tracking and Idempotency-Key with the save that succeeds.
            if state is not None:
                state.recorded = False
            if kwargs.get("idempotency") is not None:
                record.recorded = False  # type: ignore[union-attr]
            raise
        self._take_snapshots(processing_event)
        self._notify(recordings)
        for listener in list(self._save_listeners):
            listener()
        return recordings

    def record_position_hint(self, tracking: Tracking, tree: str | None = None) -> None:
        """Record a position that may be lost in a crash at no harm: how far the relay has
        published (it re-publishes), or records that caused nothing (they are read again).
        `tree`: the relay's Merkle tree at that position, recorded with it."""
        self.recorder.insert_position(tracking, tree)

    def tracking_position(self, name: str) -> int | None:
        return self.recorder.max_tracking_id(name)

    def find_idempotency(self, key: str) -> tuple[str, str | None, str | None] | None:
        return self.recorder.find_idempotency(key)

    def complete_idempotency(self, key: str, response: dict[str, Any]) -> None:
        self.recorder.complete_idempotency(key, json.dumps(response))

    def parked_records(self, topic: str | None = None, status: str = "parked") -> list[ParkedRecord]:
        return self.recorder.parked_records(topic, status)

    def find(self, cls: type[T], aggregate_id: UUID) -> T | None:
        """The aggregate of class `cls` with this id, or None."""
        try:
            found = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, cls) else None

    def load(self, cls: type[T], aggregate_id: UUID, what: str) -> T:
        """The aggregate of class `cls` with this id; `NotFound(what)` when there is none."""
        found = self.find(cls, aggregate_id)
        if found is None:
            raise NotFound(what, aggregate_id)
        return found

    def load_with_timeline(self, cls: type[T], aggregate_id: UUID, what: str) -> tuple[T, list[dict[str, Any]]]:
        """The aggregate and its events, oldest first with who caused each, from one read of the store."""
        events = list(self.events.get(aggregate_id))
        aggregate = None
        for e in events:
            aggregate = e.mutate(aggregate)
        if not isinstance(aggregate, cls):
            raise NotFound(what, aggregate_id)
        timeline = [_timeline_entry(e) for e in events]
        return aggregate, timeline


def _timeline_entry(e: Any) -> dict[str, Any]:
    meta = event_metadata(e)
    entry = {"type": type(e).__name__, "version": e.originator_version, "at": e.timestamp.isoformat(),
             "actor": meta.get("actor")}
    if meta.get("partner_id"):  # the partner organisation the human acted for
        entry["partner_id"] = meta["partner_id"]
    return entry


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Held while a process creates or migrates its service's tables.

    Several processes of one service (API processes beside a worker) may start at once;
    concurrent CREATE TABLE or Alembic runs on one database would trip over each other.
    """
    if settings.persistence == "postgres":
        import psycopg

        with psycopg.connect(host=settings.postgres_host, port=settings.postgres_port, user=settings.postgres_user,
                             password=settings.postgres_password, dbname=settings.database_name,
                             autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"schema:{settings.service}",))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"schema:{settings.service}",))
    else:
        import fcntl

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.data_dir / f"{settings.service}.schema.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
