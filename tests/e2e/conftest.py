"""Services as real processes (uvicorn), on the test PostgreSQL and Kafka."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings

PROOFS = pytest.StashKey[list[str]]()


@pytest.fixture
def proof_summary(pytestconfig: pytest.Config) -> list[str]:
    """Lines the proofs (schemathesis, the access matrix) print at the end of the run, passed or not."""
    return pytestconfig.stash.setdefault(PROOFS, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if lines := config.stash.get(PROOFS, None):
        terminalreporter.section("proofs")
        for line in lines:
            terminalreporter.write_line(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StartedProcess:
    """A process a test started: ready once `probe` answers 200, stopped with TERM then KILL."""

    probe = "/healthz"
    stop_timeout = 10.0

    def __init__(self, name: str, process: subprocess.Popen, url: str, log: Path):
        self.name, self.process, self.url, self.log = name, process, url, log

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}{self.probe}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Service(StartedProcess):
    """A Passerelle service: ready when /readyz says so (store, Kafka, consumers caught up)."""

    probe = "/readyz"
    stop_timeout = 20.0

    def __init__(self, name: str, settings: Settings, process: subprocess.Popen, port: int, log: Path, spans: Path):
        super().__init__(name, process, f"http://127.0.0.1:{port}", log)
        self.settings, self.port, self.spans = settings, port, spans


@pytest.fixture
def start_service(make_settings, tmp_path: Path) -> Iterator[Callable[[str], Service]]:
    started: list[Service] = []

    def start(name: str, role: str = "all", like: Service | None = None) -> Service:
        """Start a service process; `like` another one to share its database and topics."""
        settings = like.settings if like else make_settings(name)
        port = free_port()
        label = f"{name}-{role}"
        log = tmp_path / f"{label}.log"
        spans = tmp_path / f"{label}.spans.jsonl"
        env = {
            **os.environ,
            "PASSERELLE_PERSISTENCE": "postgres",
            "PASSERELLE_POSTGRES_DBNAME": settings.database_name,
            "PASSERELLE_TOPIC_PREFIX": settings.topic_prefix,
            "PASSERELLE_DATA_DIR": str(settings.data_dir),
            "PASSERELLE_KEYS_DIR": str(settings.keys_dir),
            "PASSERELLE_PORT": str(port),
            "PASSERELLE_POLL_INTERVAL": "0.1",
            "PASSERELLE_CHECKPOINT_EVERY_SECONDS": "0.5",
            "PASSERELLE_TRACE_EXPORTER": f"file:{spans}",
            "PASSERELLE_ROLE": role,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        }
        with open(log, "w") as out:
            process = subprocess.Popen([sys.executable, "-m", f"services.{name}.main"], env=env,
                                       stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
        service = Service(label, settings, process, port, log, spans)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
