"""A broker of the secured profile for the tests (SASL/SCRAM, the authorizer, ACLs), and its clients.

Started through deploy/kafka.sh with KAFKA_SECURITY=sasl on its own ports (SECURED_KAFKA_PORT,
SECURED_KAFKA_CONTROLLER_PORT: 59092/59093) and data directory (SECURED_KAFKA_DIR, default
var/test-kafka-secured, wiped at each start), with fresh passwords each time. The fixture that
starts it stops it; deploy/test.sh stops it too, should pytest itself be killed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy import kafka_access
from deploy.kafka_access import Allow
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("SECURED_KAFKA_PORT", "59092"))
CONTROLLER_PORT = int(os.environ.get("SECURED_KAFKA_CONTROLLER_PORT", "59093"))
DATA_DIR = Path(os.environ.get("SECURED_KAFKA_DIR", REPO / "var" / "test-kafka-secured"))


@dataclass
class SecuredKafka:
    data_dir: Path = DATA_DIR
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{PORT}"

    def _kafka_sh(self, command: str) -> None:
        env = {**os.environ, "KAFKA_SECURITY": "sasl", "KAFKA_ADMIN_PASSWORD": self.admin_password,
               "KAFKA_PORT": str(PORT), "KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
               "KAFKA_DATA_DIR": str(self.data_dir)}
        subprocess.run([str(REPO / "deploy" / "kafka.sh"), command], env=env, check=True, timeout=120)

    def start(self) -> None:
        """A fresh broker: a leftover one (from a killed run) is stopped and its data wiped."""
        self._kafka_sh("stop")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._kafka_sh("start")

    def stop(self) -> None:
        self._kafka_sh("stop")

    def password(self, principal: str) -> str:
        return self.passwords.setdefault(principal, secrets.token_urlsafe(16))

    def grant(self, principals: list[str], acls: list[Allow]) -> None:
        """SCRAM credentials for the principals and the ACLs, as an administrator would."""
        kafka_access.apply(self.bootstrap, {p: self.password(p) for p in principals}, acls, "admin",
                           self.admin_password)

    def settings(self, principal: str, **values: Any) -> Settings:
        """A service's settings on this broker, authenticated as `principal`."""
        password = self.admin_password if principal == "admin" else self.password(principal)
        return Settings(kafka_bootstrap_servers=self.bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                        kafka_username=principal, kafka_password=password, **values)


async def produce_as(settings: Settings, topic: str, records: list[tuple[bytes, bytes]], *,
                     idempotent: bool = True) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=idempotent)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_as(settings: Settings, topic: str, group: str, expect: int, *, committed: bool = True,
                  timeout: float = 60.0) -> list[Any]:
    """The records of `topic` from its start, as a partner's client reads them: waits for at
    least `expect`, then keeps reading a moment to catch anything more (a duplicate)."""
    consumer = AIOKafkaConsumer(topic, **settings.kafka_client_options(), group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed" if committed else "read_uncommitted")
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        for _ in range(4):
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def refusal(action: Any, seconds: float = 20.0) -> BaseException | None:
    """What the broker answers to `action` (a coroutine function): the exception, or None."""
    try:
        await asyncio.wait_for(action(), seconds)
    except asyncio.TimeoutError:
        return None
    except Exception as exc:  # noqa: BLE001 - the caller checks which
        return exc
    return None


async def try_reading(settings: Settings, topic: str, group: str) -> None:
    """Subscribe and poll until the broker refuses (raises) or a record comes."""
    consumer = AIOKafkaConsumer(topic, **settings.kafka_client_options(), group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        await consumer.start()
        while True:
            if await consumer.getmany(timeout_ms=300):
                return
    finally:
        await consumer.stop()


async def try_writing(settings: Settings, topic: str) -> None:
    """Write one record. Not idempotent: an idempotent producer of a principal that may write
    nowhere is refused before any topic is named (ClusterAuthorizationFailed)."""
    await produce_as(settings, topic, [(b"k", b"{}")], idempotent=False)
