"""Read models: SQLAlchemy tables kept up to date from the service's own event log.

A projection applies events to its tables and moves its tracking row forward
in ONE transaction, so it never applies an event twice nor skips one, and it
can be dropped and rebuilt at any time with the same rows as a result. Its
schema is migrated by Alembic (`<service>/migrations`); `rebuild` drops and
recreates its tables, then replays the log.
"""

from __future__ import annotations

import base64
import logging
import threading
from datetime import UTC, datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from opentelemetry.instrumentation.utils import suppress_instrumentation
from alembic.config import Config
from sqlalchemy import text, BigInteger, Column, Connection, Engine, MetaData, String, Table, create_engine, event, select, update

from sqlalchemy import DateTime, Select, TypeDecorator

from shared.api import CONTROL_OR_LINE
from shared.domain import InvalidValue
from shared.settings import Settings
from shared.store import ServiceApplication

log = logging.getLogger(__name__)


def views_metadata() -> MetaData:
    """A service's read-model metadata, with the tracking table every projection shares."""
    metadata = MetaData()
    Table(
        "projection_tracking", metadata,
        Column("projection", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False),
    )
    return metadata


def views_engine(settings: Settings) -> Engine:
    url = settings.views_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        return engine
    return create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


def migrate(engine: Engine, migrations: Path) -> None:
    """Bring the read-model schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class UtcDateTime(TypeDecorator[datetime]):
    """A moment in a read model: stored in UTC, read back in UTC with its zone.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none and gives naive times back,
    which would leave a response without its zone. The schema is `DateTime(timezone=True)`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def cursor_of(at: datetime, row_id: str) -> str:
    """The `next_cursor` of a page ordered by (at, id): the last row's place, opaque to clients."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def after_cursor(query: Select[Any], cursor: str | None, at_column: Any, id_column: Any) -> Select[Any]:
    """`query` restricted to the rows after the one `cursor` names (keyset pagination)."""
    if not cursor:
        return query
    try:
        at, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        after = datetime.fromisoformat(at)
        if after.tzinfo is not None:
            after = after.astimezone(UTC)
        if CONTROL_OR_LINE.search(last_id):
            raise ValueError("a control character")
    except (ValueError, OverflowError):
        raise InvalidValue("cursor", "not a cursor this API gave") from None
    return query.where((at_column > after) | ((at_column == after) & (id_column > last_id)))


class Projection:
    """One read model. Subclasses name it, list its tables and apply events to them."""

    name: ClassVar[str]
    tables: ClassVar[Sequence[Table]]

    def apply(self, conn: Connection, domain_event: Any) -> None:
        raise NotImplementedError


class Projector:
    """Runs projections over the service's log, in a background thread woken by saves."""

    def __init__(self, app: ServiceApplication, engine: Engine, metadata: MetaData,
                 projections: Sequence[Projection], *, batch_size: int = 500, poll_interval: float = 0.5,
                 coalesce: float = 0.05):
        self.app = app
        self.engine = engine
        self.tracking = metadata.tables["projection_tracking"]
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.coalesce = coalesce
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        app.on_save(self._wake.set)

    def position(self, name: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(self.tracking.c.position).where(self.tracking.c.projection == name)).scalar() or 0

    def catch_up(self, *names: str) -> int:
        """Apply every event not yet applied to the named projections (all by default); returns
        how many were applied. Safe from any thread."""
        chosen = [self.projections[name] for name in names] if names else list(self.projections.values())
        with self._lock:
            return sum(self._catch_up(projection) for projection in chosen)

    def _catch_up(self, projection: Projection) -> int:
        applied = 0
        while True:
            n = self._step(projection)
            applied += n
            if n < self.batch_size:
                return applied

    def _step(self, projection: Projection) -> int:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Rows and position commit together, so a crash that loses this commit loses
                # both: the events are applied again. No need to wait for the WAL flush.
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            current = conn.execute(
                select(self.tracking.c.position).where(self.tracking.c.projection == projection.name)
            ).scalar()
            notifications = self.app.recorder.select_notifications(
                current or 0, self.batch_size, None, (), inclusive_of_start=False
            )
            if not notifications:
                return 0
            for notification in notifications:
                projection.apply(conn, self.app.mapper.to_domain_event(notification))
            last = notifications[-1].id
            if current is None:
                conn.execute(self.tracking.insert().values(projection=projection.name, position=last))
            else:
                moved = conn.execute(
                    update(self.tracking)
                    .where(self.tracking.c.projection == projection.name, self.tracking.c.position == current)
                    .values(position=last)
                ).rowcount
                if moved != 1:  # another projector got there first: roll back, read again
                    raise RuntimeError(f"projection {projection.name} moved concurrently")
            return len(notifications)

    def rebuild(self, name: str) -> int:
        """Drop the projection's rows and tracking, recreate its tables and replay the whole log."""
        projection = self.projections[name]
        with self._lock:
            with self.engine.begin() as conn:
                for table in reversed(list(projection.tables)):
                    table.drop(conn, checkfirst=True)
                for table in projection.tables:
                    table.create(conn)
                conn.execute(self.tracking.delete().where(self.tracking.c.projection == name))
            return self._catch_up(projection)

    def wake(self) -> None:
        """Catch up soon (thread-safe)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with suppress_instrumentation():  # polling is not worth a trace
                    self.catch_up()
            except Exception:
                log.exception("projector failed; retrying")
            if self._wake.wait(self.poll_interval):
                # Read models are eventually consistent: gather the saves of a short while
                # into one transaction rather than one per command.
                self._stop.wait(self.coalesce)
            self._wake.clear()

    def lag(self) -> int:
        latest = self.app.recorder.max_notification_id() or 0
        return max((max(0, latest - self.position(n)) for n in self.projections), default=0)
