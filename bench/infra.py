"""What every part of the bench needs: where PostgreSQL and Kafka are, fresh databases and topics,
service processes started and always stopped, percentiles and CPU accounting."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from shared.settings import REPO_ROOT, Settings
from shared.topics import Topic, create_topics, definitions


# Set on Ctrl-C / SIGTERM: worker threads of a measurement stop at once (the loop's tasks are cancelled).
STOP = threading.Event()


@dataclass
class Infra:
    """The infrastructure of `deploy/test.sh --bench`, read from the same environment as the tests."""

    kafka: str
    pg: dict[str, Any]
    run_id: str
    out_dir: Path
    work_dir: Path

    @classmethod
    def from_env(cls, out_dir: Path) -> Infra:
        run_id = uuid.uuid4().hex[:8]
        work_dir = out_dir / "runs" / run_id
        work_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            pg={
                "host": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
                "port": int(os.environ.get("POSTGRES_PORT", "5432")),
                "user": os.environ.get("POSTGRES_USER", "passerelle"),
                "password": os.environ.get("POSTGRES_PASSWORD", "passerelle"),
            },
            run_id=run_id,
            out_dir=out_dir,
            work_dir=work_dir,
        )

    def cpu_names(self, **named: int | None) -> dict[int, str]:
        """Labels for CpuMeter: this process, the test broker, and the given pids."""
        names = {os.getpid(): "bench process"}
        port = int(self.kafka.rsplit(":", 1)[1])
        broker = pid_listening_on(port)
        if broker:
            names[broker] = "kafka (test broker)"
        names.update({pid: label for label, pid in named.items() if pid})
        return names

    def prefix(self, part: str) -> str:
        """A topic prefix of this run and part: nobody else's topics, no leftovers of earlier runs."""
        return f"bench{self.run_id}.{part}."

    def check_reachable(self) -> None:
        for what, address in (("Kafka", self.kafka), ("PostgreSQL", f"{self.pg['host']}:{self.pg['port']}")):
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=3):
                    pass
            except OSError as exc:
                raise SystemExit(f"bench: {what} is not reachable at {address} ({exc}); "
                                 "run `deploy/test.sh --bench` or start it (see deploy/)") from None

    def reset_database(self, name: str) -> None:
        """Drop and re-create one of the bench's own databases."""
        with psycopg.connect(dbname="postgres", autocommit=True, **self.pg) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def settings(self, service: str, dbname: str, prefix: str, data_dir: Path, **overrides: Any) -> Settings:
        return Settings(
            service=service, persistence="postgres", postgres_dbname=dbname, postgres_host=self.pg["host"],
            postgres_port=self.pg["port"], postgres_user=self.pg["user"], postgres_password=self.pg["password"],
            kafka_bootstrap_servers=self.kafka, topic_prefix=prefix, data_dir=data_dir, **overrides,
        )

    async def create_topics(self, settings: Settings, extra: list[Topic] | None = None) -> None:
        await create_topics(settings, definitions() + list(extra or []))

    def pg_facts(self) -> dict[str, str]:
        with psycopg.connect(dbname="postgres", autocommit=True, **self.pg) as conn:
            facts = {}
            for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections"):
                facts[name] = conn.execute(f"SHOW {name}").fetchone()[0]
            return facts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the bench process dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class ServiceProcess:
    """A Passerelle service as a real process (`python -m services.<name>.main`), stopped by its pid."""

    def __init__(self, name: str, infra: Infra, settings: Settings, extra_env: dict[str, str] | None = None):
        self.name = name
        self.settings = settings
        self.port = settings.port or free_port()
        role = (extra_env or {}).get("PASSERELLE_ROLE")
        self.log_path = infra.work_dir / (f"{name}-{role}.log" if role else f"{name}.log")
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PASSERELLE_PERSISTENCE": "postgres",
            "PASSERELLE_POSTGRES_DBNAME": settings.database_name,
            "PASSERELLE_TOPIC_PREFIX": settings.topic_prefix,
            "PASSERELLE_PORT": str(self.port),
            "PASSERELLE_DATA_DIR": str(settings.data_dir),
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "POSTGRES_HOST": settings.postgres_host,
            "POSTGRES_PORT": str(settings.postgres_port),
            "POSTGRES_USER": settings.postgres_user,
            "POSTGRES_PASSWORD": settings.postgres_password,
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ServiceProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}.main"], cwd=REPO_ROOT, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Until /readyz answers 200 (store reachable, relay holding its lock, consumers connected)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    response = await client.get("/readyz")
                    last = response.text
                    if response.status_code == 200:
                        return response.json()
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s (last: {last}):\n{self.log_tail()}")

    async def wait_quiet(self, timeout: float = 60.0) -> None:
        """Until its relay has published everything saved so far (lets the next measurement start clean)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    checks = (await client.get("/readyz")).json().get("checks", {})
                    if checks.get("relay_lag") == 0:
                        await asyncio.sleep(0.5)  # the projector follows the same wake-up
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful: uvicorn's lifespan closes relay and consumers), then SIGKILL; by pid only."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


class Spy:
    """Optional: py-spy sampling service processes (all threads, on-CPU samples only) while a series runs.

    Only with `--profile` and py-spy installed beside the interpreter (`pip install py-spy`;
    not a project dependency). Writes py-spy's "raw" collapsed stacks, one file per series.
    """

    def __init__(self, enabled: bool):
        self.binary = Path(sys.executable).with_name("py-spy")
        self.enabled = enabled and self.binary.exists()
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, pid: int | None, path: Path) -> None:
        if not self.enabled or pid is None:
            return
        proc = subprocess.Popen(
            [str(self.binary), "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(path), "--gil",
             "--threads", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.running.append((proc, path))

    def stop(self) -> list[str]:
        written = []
        for proc, path in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if path.exists():
                written.append(str(path))
        self.running.clear()
        return written


# --- statistics -------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


# --- CPU accounting: who used the 2 cores during a measurement ---------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _machine_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _children_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _process_jiffies() -> dict[int, tuple[str, int]]:
    """pid -> (what it is, CPU jiffies used so far)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
            comm = raw[raw.index("(") + 1: raw.rindex(")")]
            if comm == "postgres":  # backends show their database in their title
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    comm = "postgres " + f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        rest = raw[raw.rindex(")") + 2:].split()
        out[int(entry.name)] = (comm, int(rest[11]) + int(rest[12]))  # utime + stime
    return out


def pid_listening_on(port: int) -> int | None:
    """The process holding a listening TCP socket on `port` (the test broker), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(cols[9])
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                target = os.readlink(fd.path)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


@dataclass
class CpuMeter:
    """Machine CPU use and CPU seconds by process group over an interval (from /proc).

    Groups: the processes named in `names` (the bench, the services), the test broker,
    PostgreSQL backends of the bench's databases, and everything else on the machine
    (other people's tests, their brokers and databases): the 2 cores are shared.
    """

    names: dict[int, str] = field(default_factory=dict)  # pid -> label
    _start: Any = None

    def start(self) -> CpuMeter:
        self._start = (time.perf_counter(), _machine_jiffies(), _process_jiffies(), _children_seconds())
        return self

    def _label(self, pid: int, comm: str) -> str:
        if pid in self.names:
            return self.names[pid]
        if comm.startswith("postgres "):
            if " bench_" in comm:
                return "postgres (bench dbs)"
            if "(" in comm or "[local]" in comm:  # a backend of another database
                return "others: postgres"
            return "postgres (server: wal, checkpoints)"
        return f"others: {comm}"

    def stop(self) -> dict[str, Any]:
        t0, (busy0, total0), procs0, children0 = self._start
        t1, (busy1, total1), procs1 = time.perf_counter(), _machine_jiffies(), _process_jiffies()
        wall = t1 - t0
        groups: dict[str, float] = defaultdict(float)
        for pid, (comm, jiffies) in procs1.items():
            if pid not in procs0:
                continue  # started during the interval: not counted
            used = (jiffies - procs0[pid][1]) / _TICK
            if used > 0:
                groups[self._label(pid, comm)] += used
        # Processes this one started and waited for during the interval (the audit's readers): gone from
        # /proc, their CPU is in this process's children's times.
        children = _children_seconds() - children0
        if children > 0:
            groups["bench's child processes (ended)"] += children
        top = sorted(groups.items(), key=lambda kv: -kv[1])
        others = sum(v for k, v in top if k.startswith("others"))
        return {
            "wall_s": round(wall, 2),
            "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            "cores": os.cpu_count() or 1,
            # CPU-seconds per wall second: 1.0 = one core busy all the time.
            "cores_used_by": {k: round(v / wall, 2) for k, v in top if not k.startswith("others") and v / wall >= 0.01},
            "cores_used_by_others": round(others / wall, 2),
            "others_top": {k[8:]: round(v / wall, 2) for k, v in top[:12] if k.startswith("others") and v / wall >= 0.02},
        }


def short_cpu(cpu: dict[str, Any]) -> str:
    """One line for the table: who used the cores during a measurement."""
    if not cpu:
        return ""
    ours = ", ".join(f"{k} {v:.2f}" for k, v in cpu["cores_used_by"].items())
    return (f"machine {cpu['machine_busy_pct']:.0f} % busy; cores used: {ours}, "
            f"others on the machine {cpu['cores_used_by_others']:.2f}")


def machine_facts() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    from importlib.metadata import version

    libs = {}
    for lib in ("eventsourcing", "psycopg", "aiokafka", "fastapi", "uvicorn", "httpx"):
        try:
            libs[lib] = version(lib)
        except Exception:  # noqa: BLE001
            libs[lib] = "?"
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "libraries": libs,
    }


def dump_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
