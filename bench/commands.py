"""Part 1: the command path beside the library's raw save rate, on the same PostgreSQL server.

Command path: `POST /v1/projects` with N concurrent HTTP clients (httpx.AsyncClient, one
connection each) against intake served by a real uvicorn process
(`python -m services.intake.main`, PostgreSQL store, its relay publishing to Kafka and
its projector running, as in production). Every body has a distinct promoter, so no
dossier is a duplicate: each request is one `submit_project`, which saves a new Project
(ProjectSubmitted, EligibilityAssessed) and a new Person (PersonRegistered,
DossierOpened): 2 aggregates, 4 events, one transaction; plus the person's data key
(one more transaction, in the vault).

Raw, beside it: a plain `eventsourcing.application.Application` with the library's
built-in PostgreSQL recorder, in this process, N threads, the same pool settings as a
service's store:
  - raw/4: one `save()` of the same two new aggregates (real intake Project + Person,
    4 events) per call: the fair comparison for the command path;
  - raw/1: one `save()` of one new aggregate with one event per call (reference).

To tell what limits the HTTP figure, `submit_project` is then also called in this
process with N threads, no HTTP: once with the service's runtime (relay, projector,
consumer) running beside it, once alone (`in_process_layers`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.infra import STOP, CpuMeter, Infra, ServiceProcess, Spy, percentile, short_cpu
from bench.report import Figure
from services.intake.application import load_rules, new_reference
from services.intake.domain import Person, Project
from shared.auth import issue_token

PART = "1 commands"
TARGET_PCT = 70.0


def dossier_body(unique: str) -> dict[str, Any]:
    return {
        "promoter": {"given_name": "Awa", "family_name": f"Diop{unique}", "birth_date": "1990-01-01",
                     "phone": "+33 6 12 34 56 78", "residence_status": "regular"},
        "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique", "description": "",
        "requested_amount_cents": 500000, "own_contribution_cents": 100000, "planned_jobs": 2,
    }


@dataclass
class Load:
    """One measurement: completions inside the measuring window, their latencies."""

    what: str
    concurrency: int
    window_s: float
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, Any] = field(default_factory=dict)
    events_per_op: int = 1
    # Figures measured by an external load generator (wrk) instead of `latencies`.
    external: dict[str, float] | None = None

    @property
    def ops(self) -> int:
        return int(self.external["ops"]) if self.external else len(self.latencies)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.window_s

    def summary(self) -> dict[str, Any]:
        ms = [x * 1000 for x in self.latencies]
        p50, p99 = ((self.external["p50_ms"], self.external["p99_ms"]) if self.external
                    else (percentile(ms, 50), percentile(ms, 99)))
        return {
            "what": self.what, "concurrency": self.concurrency, "window_s": self.window_s,
            "ops": self.ops, "ops_per_s": round(self.ops_per_s, 1),
            "events_per_s": round(self.ops_per_s * self.events_per_op, 1),
            "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
            "errors": dict(self.errors), "cpu": self.cpu, "cpu_ms_per_op": cpu_ms_per_op(self.cpu, self.ops),
            "client": "wrk" if self.external else "httpx",
        }


def cpu_ms_per_op(cpu: dict[str, Any], ops: int) -> dict[str, float]:
    """CPU milliseconds per operation, by process group: where a command's cost goes."""
    if not cpu or not ops:
        return {}
    return {k: round(1000 * v * cpu["wall_s"] / ops, 2) for k, v in cpu["cores_used_by"].items()}


# --- the command path, over HTTP ------------------------------------------------------------

async def http_load(base_url: str, token: str, clients: int, warmup: float, duration: float, tag: str,
                    cpu_names: dict[int, str]) -> Load:
    load = Load("POST /v1/projects", clients, duration, events_per_op=4)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        t_measure, t_end = start + warmup, start + warmup + duration
        meter: list[CpuMeter] = []

        async def start_meter() -> None:
            await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
            meter.append(CpuMeter(cpu_names).start())

        async def worker(i: int) -> None:
            n = 0
            while time.perf_counter() < t_end:
                n += 1
                body = dossier_body(f"{tag}c{clients}w{i}n{n}")
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/projects", json=body)
                except httpx.HTTPError as exc:
                    load.errors[type(exc).__name__] += 1
                    continue
                t1 = time.perf_counter()
                if response.status_code != 201:
                    load.errors[f"HTTP {response.status_code}"] += 1
                    continue
                samples.append((t0, t1))

        metering = asyncio.create_task(start_meter())
        await asyncio.gather(*(worker(i) for i in range(clients)))
        await metering
        load.cpu = meter[0].stop() if meter else {}
    # Completions inside the window (requests still running at its end are not counted).
    load.latencies = [t1 - t0 for t0, t1 in samples if t_measure <= t1 <= t_end]
    return load


def cpu_total(load: Load) -> float:
    return round(sum(cpu_ms_per_op(load.cpu, load.ops).values()), 2)


def ceiling_pct(cmd: Load, raw: Load, cores: int) -> float:
    """The best ratio the measured CPU per request allows: every core busy with commands only.
    Above the target, the path could meet it on this machine; below, no tuning of waits can."""
    per_request_ms = cpu_total(cmd)
    if not per_request_ms or not raw.ops_per_s:
        return float("nan")
    return min(100.0, 100 * (cores * 1000 / per_request_ms) / raw.ops_per_s)


def per_op_text(load: Load) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms_per_op(load.cpu, load.ops).items())


async def wrk_load(base_url: str, token: str, clients: int, warmup: float, duration: float, tag: str,
                   cpu_names: dict[int, str]) -> Load:
    """The same load from wrk (C, one thread): the client's own CPU no longer competes with
    the service for the 2 cores as httpx's does (about 2 ms of CPU per request)."""
    script = Path(__file__).with_name("submit.lua")

    async def wrk(seconds: float, label: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "60s", "-s", str(script),
            base_url, "--", token, label, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    if warmup > 0:
        await (await wrk(warmup, f"{tag}c{clients}warm")).communicate()
    proc = await wrk(duration, f"{tag}c{clients}")
    meter = CpuMeter({**cpu_names, proc.pid: "load generator (wrk)"}).start()
    out, err = await proc.communicate()
    cpu = meter.stop()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]}")
    figures = json.loads(lines[-1])
    window = figures["duration_us"] / 1e6
    load = Load("POST /v1/projects", clients, window, events_per_op=4, cpu=cpu)
    failed = figures["non_2xx"] + sum(figures[k] for k in ("errors_connect", "errors_read", "errors_write",
                                                           "errors_timeout"))
    for key in ("non_2xx", "errors_connect", "errors_read", "errors_write", "errors_timeout"):
        if figures[key]:
            load.errors[key] += figures[key]
    load.external = {"ops": figures["requests"] - failed, "p50_ms": figures["p50_us"] / 1000,
                     "p99_ms": figures["p99_us"] / 1000}
    return load


def command_load() -> Callable[..., Any]:
    """wrk when it is installed (deploy/test.sh --bench installs it), httpx otherwise."""
    return wrk_load if shutil.which("wrk") else http_load


# --- raw library saves ----------------------------------------------------------------------

class RawBench(Application):
    """The library's Application, nothing of Passerelle's kernel: default mapper, built-in recorder."""


class Item(Aggregate):
    @event("Created")
    def __init__(self, name: str, qty: int):
        self.name = name
        self.qty = qty


def raw_env(infra: Infra, dbname: str, pool_size: int) -> dict[str, str]:
    """The same library settings as a service's store (shared.settings.Settings.eventsourcing_env)."""
    settings = infra.settings("raw", dbname, "", infra.work_dir, postgres_pool_size=pool_size)
    return settings.eventsourcing_env()


def make_intake_pair(rules: Any, ciphertext_len: int) -> Callable[[], tuple[Any, ...]]:
    """Two new aggregates with four events, as submit_project makes them (ProjectSubmitted,
    EligibilityAssessed, PersonRegistered, DossierOpened)."""

    def make() -> tuple[Any, ...]:
        person_id = uuid.uuid4()
        project = Project(
            reference=new_reference(), person_id=person_id,
            promoter_ciphertext=base64.b64encode(os.urandom(ciphertext_len)).decode(), country="SN",
            french_region="FR-IDF", sector="trade", title="Boutique", description="",
            requested_amount_cents=500000, own_contribution_cents=100000, planned_jobs=2,
        )
        person = Person(person_id=person_id)
        person.open_dossier(project.id)
        project.screen(rules)
        return project, person

    return make


def make_item() -> tuple[Any, ...]:
    return (Item("item", 1),)


def raw_load(app: Application, make: Callable[[], tuple[Any, ...]], threads: int, warmup: float,
             duration: float, what: str, events_per_op: int, cpu_names: dict[int, str]) -> Load:
    """`threads` threads each calling `app.save(*make())`; the aggregates are made before the clock starts."""
    return thread_load(make, lambda objs: app.save(*objs), threads, warmup, duration, what, events_per_op, cpu_names)


def thread_load(prepare: Callable[[], Any], act: Callable[[Any], Any], threads: int, warmup: float,
                duration: float, what: str, events_per_op: int, cpu_names: dict[int, str]) -> Load:
    """`threads` threads each doing `act(prepare())` in a loop; only `act` is timed."""
    load = Load(what, threads, duration, events_per_op=events_per_op)
    samples: list[list[tuple[float, float]]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    t_bounds: list[float] = []

    def worker(i: int) -> None:
        barrier.wait()
        t_end = t_bounds[1]
        mine = samples[i]
        while time.perf_counter() < t_end and not STOP.is_set():
            prepared = prepare()
            t0 = time.perf_counter()
            try:
                act(prepared)
            except Exception as exc:  # noqa: BLE001
                load.errors[type(exc).__name__] += 1
                continue
            mine.append((t0, time.perf_counter()))

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start = time.perf_counter()
    t_bounds[:] = [start + warmup, start + warmup + duration]
    barrier.wait()
    STOP.wait(max(0.0, t_bounds[0] - time.perf_counter()))
    meter = CpuMeter(cpu_names).start()
    STOP.wait(max(0.0, t_bounds[1] - time.perf_counter()))
    load.cpu = meter.stop()
    for t in pool:
        t.join()
    load.latencies = [t1 - t0 for mine in samples for t0, t1 in mine if t_bounds[0] <= t1 <= t_bounds[1]]
    return load


# --- the part -------------------------------------------------------------------------------

async def run(infra: Infra, stack: Any, *, levels: list[int], warmup: float, duration: float,
              log: Callable[[str], None], spy: Spy | None = None, layers: bool = True
              ) -> tuple[list[Figure], dict[str, Any]]:
    spy = spy or Spy(False)
    prefix = infra.prefix("cmd")
    data_dir = infra.work_dir / "cmd"
    for db in ("bench_intake", "bench_raw"):
        infra.reset_database(db)
    settings = infra.settings("intake", "bench_intake", prefix, data_dir)
    await infra.create_topics(settings)
    token = issue_token(settings, "intake_officer", sub="bench")

    # The production shape: the HTTP API in its own process, the relay and projector in a worker
    # (PASSERELLE_ROLE), so requests do not share a GIL with the background work.
    worker = ServiceProcess("intake", infra, settings, {"PASSERELLE_ROLE": "worker"})
    stack.callback(worker.stop)
    worker.start()
    await worker.wait_ready()
    intake = ServiceProcess("intake", infra, settings.model_copy(update={"port": 0}), {"PASSERELLE_ROLE": "api"})
    stack.callback(intake.stop)
    intake.start()
    await intake.wait_ready()
    log(f"intake API on {intake.base_url} (pid {intake.pid}), worker pid {worker.pid}, database bench_intake, "
        f"topics {prefix}*")
    cpu_names = infra.cpu_names(**{"intake API": intake.pid, "intake worker": worker.pid})

    # The raw application: same server, same library settings (pool 10 + overflow 10) as the service.
    raw = RawBench(env=raw_env(infra, "bench_raw", settings.postgres_pool_size))
    stack.callback(raw.close)
    rules = load_rules()
    # The promoter ciphertext submit_project stores: base64(nonce + AES-GCM(json) + tag).

    plain = json.dumps({**dossier_body("x" * 12)["promoter"], "email": None}, sort_keys=True)
    pair = make_intake_pair(rules, 12 + len(plain) + 16)

    # Warm both paths (connections, imports, first-request costs).
    load_http = command_load()
    log(f"HTTP load generator: {'wrk' if load_http is wrk_load else 'httpx (install wrk for a lighter client)'}")
    await load_http(intake.base_url, token, 2, 0.0, 1.0, f"{infra.run_id}warm", cpu_names)
    await asyncio.to_thread(raw_load, raw, pair, 2, 0.0, 0.5, "warm", 4, cpu_names)
    await worker.wait_quiet()

    details: dict[str, Any] = {"levels": []}
    figures: list[Figure] = []
    cores = os.cpu_count() or 1
    for n in levels:
        log(f"command path, {n} client(s): {warmup:g} s warm-up + {duration:g} s")
        spy.start(intake.pid, infra.work_dir / f"profile-commands-{n}-intake.txt")
        spy.start(worker.pid, infra.work_dir / f"profile-commands-{n}-worker.txt")
        cmd = await load_http(intake.base_url, token, n, warmup, duration, infra.run_id, cpu_names)
        details.setdefault("profiles", []).extend(spy.stop())
        await worker.wait_quiet()  # intake's relay and projector catch up before the raw runs
        log(f"raw save of 2 aggregates / 4 events, {n} thread(s)")
        raw4 = await asyncio.to_thread(raw_load, raw, pair, n, warmup, duration, "raw save 2 aggregates/4 events", 4,
                                       cpu_names)
        log(f"raw save of 1 aggregate / 1 event, {n} thread(s)")
        raw1 = await asyncio.to_thread(raw_load, raw, make_item, n, warmup, duration, "raw save 1 aggregate/1 event", 1,
                                       cpu_names)
        level = {"concurrency": n, "command": cmd.summary(), "raw4": raw4.summary(), "raw1": raw1.summary()}
        details["levels"].append(level)
        pct = 100 * cmd.ops_per_s / raw4.ops_per_s if raw4.ops_per_s else float("nan")
        c = cmd.summary()
        errors = f"; errors {dict(cmd.errors)}" if cmd.errors else ""
        figures += [
            Figure(PART, f"N={n} POST /v1/projects", cmd.ops_per_s, "req/s",
                   note=f"p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms; {c['events_per_s']:.0f} events/s{errors}"),
            Figure(PART, f"N={n} raw save 2 agg/4 ev", raw4.ops_per_s, "saves/s",
                   note=f"p50 {raw4.summary()['p50_ms']} ms, p99 {raw4.summary()['p99_ms']} ms"),
            Figure(PART, f"N={n} raw save 1 agg/1 ev", raw1.ops_per_s, "saves/s",
                   note=f"p50 {raw1.summary()['p50_ms']} ms, p99 {raw1.summary()['p99_ms']} ms (reference)"),
            Figure(PART, f"N={n} command path / raw 4-event save", pct, "%", (">=", TARGET_PCT),
                   note=f"during the command run: {short_cpu(cmd.cpu)}"),
            Figure(PART, f"N={n} CPU per request / per raw save", cpu_total(cmd), "ms",
                   note=f"request: {per_op_text(cmd)}; raw save: {per_op_text(raw4)} ({cpu_total(raw4):.2f} ms)"),
            Figure(PART, f"N={n} ceiling of the ratio on {cores} cores", ceiling_pct(cmd, raw4, cores), "%",
                   note="if the cores did nothing but this work: (cores / CPU per request) / raw saves per s, "
                        "or 100 % when the raw save is the slower"),
        ]
        log(f"  N={n}: command {cmd.ops_per_s:.0f} req/s (p50 {c['p50_ms']} ms), raw/4 {raw4.ops_per_s:.0f} saves/s, "
            f"raw/1 {raw1.ops_per_s:.0f} saves/s -> {pct:.0f} %")
    intake.stop()
    worker.stop()
    if layers:
        figures += await in_process_layers(infra, levels, warmup, duration, log, details)
    return figures, details


async def in_process_layers(infra: Infra, levels: list[int], warmup: float, duration: float,
                            log: Callable[[str], None], details: dict[str, Any]) -> list[Figure]:
    """What the HTTP figure is made of: `submit_project` called in this process, N threads, no HTTP.

    - with the service's runtime running (relay to Kafka, projector, consumer), as in the
      service process: the command and its background work, without the HTTP layer;
    - with nothing running beside it: the command alone (vault key, repository.get, save).
    The same telemetry as a service process (`shared.telemetry.setup`: SDK spans, store and
    read-model spans) is set up first; the raw series above ran without it.
    """
    from services.intake.main import build
    from shared import telemetry

    telemetry.setup("bench", "none", "WARNING")
    by_level: dict[int, dict[str, Any]] = {n: {} for n in levels}
    for label, started in (("with relay + projector", True), ("alone", False)):
        db = "bench_inproc_full" if started else "bench_inproc_alone"
        infra.reset_database(db)
        settings = infra.settings("intake", db, infra.prefix(f"inproc{int(started)}"), infra.work_dir / "inproc")
        await infra.create_topics(settings)
        runtime = build(settings)
        app = runtime.app
        if started:
            await runtime.start()
        counter = iter(range(10**9))

        def prepare() -> dict[str, Any]:
            return dossier_body(f"{infra.run_id}ip{int(started)}n{next(counter)}")

        def act(body: dict[str, Any]) -> Any:
            return app.submit_project(promoter=body["promoter"], **{k: v for k, v in body.items() if k != "promoter"})

        try:
            await asyncio.to_thread(thread_load, prepare, act, 2, 0.0, 0.5, "warm", 4, {})
            for n in levels:
                log(f"in-process submit_project, {label}, {n} thread(s)")
                load = await asyncio.to_thread(thread_load, prepare, act, n, warmup, duration,
                                               f"submit_project in-process, {label}", 4, infra.cpu_names())
                by_level[n][label] = load
        finally:
            if started:
                await runtime.close()
            else:
                app.close()
    figures = []
    for n in levels:
        with_bg, alone = by_level[n]["with relay + projector"], by_level[n]["alone"]
        details.setdefault("in_process", []).append(
            {"concurrency": n, "with_background": with_bg.summary(), "alone": alone.summary()})
        raw4 = next((lv["raw4"]["ops_per_s"] for lv in details["levels"] if lv["concurrency"] == n), float("nan"))
        figures += [
            Figure(PART, f"  N={n} in-process submit_project + relay/projector", with_bg.ops_per_s, "cmd/s",
                   note=f"no HTTP; {100 * with_bg.ops_per_s / raw4:.0f} % of raw; p50 {with_bg.summary()['p50_ms']} ms; "
                        f"{short_cpu(with_bg.cpu)}"),
            Figure(PART, f"  N={n} in-process submit_project alone", alone.ops_per_s, "cmd/s",
                   note=f"no HTTP, no relay/projector running; {100 * alone.ops_per_s / raw4:.0f} % of raw; "
                        f"p50 {alone.summary()['p50_ms']} ms"),
        ]
    return figures
