"""Fixtures every test shares.

Integration and end-to-end tests run against the real PostgreSQL and Kafka that
`make test` starts (deploy/test.sh exports where they are). Each test gets its
own databases and its own topic prefix, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from shared.auth import human, issue_token
from shared.settings import Settings
from shared.topics import create_topics

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
T = TypeVar("T")
POSTGRES = {
    "host": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
    "port": int(os.environ.get("POSTGRES_PORT", "5432")),
    "user": os.environ.get("POSTGRES_USER", "passerelle"),
    "password": os.environ.get("POSTGRES_PASSWORD", "passerelle"),
}


@pytest.fixture(autouse=True, scope="session")
def throwaway_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A test that forgets to pass keys_dir makes its keys here, never among the developer's keys."""
    path = tmp_path_factory.mktemp("default-keys")
    mp = pytest.MonkeyPatch()
    mp.setenv("PASSERELLE_KEYS_DIR", str(path))
    yield path
    mp.undo()


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka() -> str:
    """The test broker's address. Fails (never skips) when it is not running: run `make test`."""
    if not _reachable(KAFKA):
        pytest.fail(f"Kafka is not reachable at {KAFKA}: run the suite with `make test`")
    return KAFKA


@pytest.fixture(scope="session")
def postgres() -> dict[str, object]:
    if not _reachable(f"{POSTGRES['host']}:{POSTGRES['port']}"):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES['host']}:{POSTGRES['port']}: run `make test`")
    return POSTGRES


def create_database(name: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    # An autovacuum worker may be in the database at that moment; ending it needs
    # pg_signal_backend (deploy/postgres.sh grants it). Retry once it has gone.
    for attempt in range(10):
        try:
            with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 9:
                raise
            time.sleep(0.5)


@pytest.fixture
def make_settings(tmp_path: Path, kafka: str, postgres: dict[str, object]) -> Iterator[Callable[..., Settings]]:
    """Settings for a service on PostgreSQL (a fresh database) and Kafka (a fresh topic prefix), topics created.

    All services made by one test share the topic prefix, the data dir and the key directory
    (throw-away keys under the test's tmp_path, never the development keys).
    """
    prefix = f"t{uuid.uuid4().hex[:10]}."
    databases: list[str] = []

    def make(service: str, **overrides: object) -> Settings:
        database = f"test_{prefix[:-1]}_{service}"
        create_database(database)
        databases.append(database)
        settings = Settings(
            service=service, persistence="postgres", postgres_dbname=database, postgres_host=str(postgres["host"]),
            postgres_port=int(postgres["port"]), postgres_user=str(postgres["user"]),
            postgres_password=str(postgres["password"]), kafka_bootstrap_servers=kafka, topic_prefix=prefix,
            data_dir=tmp_path, poll_interval=0.1, **{"keys_dir": tmp_path / "keys", **overrides},
        )
        asyncio.run(create_topics(settings))
        return settings

    yield make
    for database in databases:
        drop_database(database)


def wait_for(probe: Callable[[], T | None], what: str = "a condition", timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something truthy; fail (never pass) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def bearer(settings: Settings, role: str, sub: str | None = None, partner_id: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, role, sub=sub, partner_id=partner_id)}"}


def actor(settings: Settings, sub: str) -> str:
    """The actor recorded for the acts of the human `sub` holding a token of `settings`' issuer."""
    return human(settings.jwt_issuer, sub)
