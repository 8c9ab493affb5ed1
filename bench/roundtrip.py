"""Part 3: the round trip ProjectSubmitted -> PartnersRecorded, through intake, Kafka and partners.

Intake and partners run as real processes on fresh databases (bench_rt_intake,
bench_partners) and a fresh topic prefix. One support structure (FR-IDF) and one local
operator (SN, trade) are registered through partners' API (capacity as large as the API
accepts), then dossiers are submitted (`POST /v1/projects`).

The flow measured: intake saves ProjectSubmitted + EligibilityAssessed -> intake's relay
publishes to intake.events -> partners' consumer assigns (AssignmentRequested,
PartnersAssigned) -> partners' relay publishes to partners.events -> intake's consumer
saves PartnersRecorded.

The figure (with the targets) is taken from the events themselves: `at` of
PartnersRecorded minus `at` of ProjectSubmitted in the dossier's timeline
(`GET /v1/projects/{id}`). Both are made by intake, on one clock, just before each is
saved. Completion is seen without loading the services: a plain Kafka consumer in the
bench watches intake.events for the dossier's PartnersRecorded, then one GET reads the
timeline. Series:
  - 1 at a time, completion seen on Kafka: the figure;
  - 1 at a time, polling `GET /v1/projects/{id}` every few ms until "assigned": the
    client-side latency (POST sent -> first poll seeing assigned), and what the polling
    load itself does to the events' latency;
  - a few at a time, completion seen on Kafka.
The "legs" split the round trip with the record timestamps on Kafka (the producer's send
time) and the events' `time` (when made); all processes read the same system clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import time
from datetime import datetime
from typing import Any, Callable

import httpx

from bench.commands import dossier_body
from bench.infra import CpuMeter, Infra, ServiceProcess, Spy, percentile, short_cpu
from bench.report import Figure
from shared.auth import issue_token

PART = "3 round trip"
TARGET_P50_MS = 50.0
TARGET_P99_MS = 200.0


def partners_present() -> str | None:
    """None when services/partners/main.py exists and imports; else why not."""
    try:
        if importlib.util.find_spec("services.partners.main") is None:
            return "services/partners/main.py does not exist"
        import services.partners.main  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"services.partners.main does not import: {type(exc).__name__}: {exc}"
    return None


async def wait_for_partners(minutes: float, log: Callable[[str], None]) -> str | None:
    deadline = time.monotonic() + 60 * minutes
    while True:
        missing = partners_present()
        if missing is None or time.monotonic() >= deadline:
            return missing
        log(f"partners not there yet ({missing}); looking again in 60 s")
        await asyncio.sleep(60)


def _at(timeline: list[dict[str, Any]], kind: str) -> datetime | None:
    for entry in timeline:
        if entry["type"] == kind:
            return datetime.fromisoformat(entry["at"])
    return None


class Watcher:
    """Sees PartnersRecorded on intake.events (a plain consumer, no group): completion without polling intake."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 3):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.seen: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                          fetch_max_wait_ms=100)
        await self._consumer.start()
        assigned = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        import json

        while True:
            for batch in (await self._consumer.getmany(timeout_ms=100, max_records=1000)).values():
                now = time.perf_counter()
                for record in batch:
                    envelope = json.loads(record.value)
                    if envelope["type"].split(".")[2] == "PartnersRecorded":
                        subject = envelope["subject"]
                        self.seen.setdefault(subject, now)
                        waiter = self.waiters.pop(subject, None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(now)

    async def wait(self, project_id: str, timeout: float) -> float:
        if project_id in self.seen:
            return self.seen[project_id]
        waiter = self.waiters.setdefault(project_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer:
            await self._consumer.stop()


async def one_dossier(client: httpx.AsyncClient, officer: dict[str, str], reader: dict[str, str], unique: str,
                      poll_s: float | None, watcher: Watcher | None, timeout: float = 30.0) -> dict[str, Any]:
    """Submit one dossier and wait until intake recorded its partners: polling intake, or watching Kafka."""
    t0 = time.perf_counter()
    response = await client.post("/v1/projects", json=dossier_body(unique), headers=officer)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/projects: {response.status_code} {response.text[:300]}")
    created = response.json()
    if created["status"] != "eligible":
        raise RuntimeError(f"the bench's dossier should be eligible, it is {created['status']}")
    polls = 0
    if watcher is not None:
        try:
            t1 = await watcher.wait(created["id"], timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(f"dossier {created['id']}: no PartnersRecorded on Kafka after {timeout:.0f} s "
                               "(is the broker still the same? see the services' logs)") from None
        got = await client.get(f"/v1/projects/{created['id']}", headers=reader)
    else:
        deadline = t0 + timeout
        while True:
            polls += 1
            got = await client.get(f"/v1/projects/{created['id']}", headers=reader)
            t1 = time.perf_counter()
            if got.status_code == 200 and got.json()["status"] == "assigned":
                break
            if t1 > deadline:
                raise RuntimeError(f"dossier {created['id']} not assigned after {timeout:.0f} s: {got.text[:300]}")
            await asyncio.sleep(poll_s or 0.005)
    timeline = got.json()["timeline"]
    submitted, recorded = _at(timeline, "ProjectSubmitted"), _at(timeline, "PartnersRecorded")
    return {
        "id": created["id"],
        "client_ms": (t1 - t0) * 1000,
        "events_ms": (recorded - submitted).total_seconds() * 1000 if submitted and recorded else float("nan"),
        "polls": polls,
    }


async def series(client: httpx.AsyncClient, officer: dict[str, str], reader: dict[str, str], tag: str, count: int,
                 concurrency: int, poll_s: float | None, watcher: Watcher | None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            results.append(await one_dossier(client, officer, reader, f"{tag}n{i}", poll_s, watcher))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def read_topic(bootstrap: str, topic: str, partitions: int = 3, timeout: float = 30.0) -> list[Any]:
    """Every record of `topic` up to its current end (no consumer group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [tp for tp in assigned if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            for batch in (await consumer.getmany(timeout_ms=300, max_records=5000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def hops(bootstrap: str, intake_topic: str, partners_topic: str,
               results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Where the round trip's time goes, per dossier, from the records on Kafka.

    Record timestamps are the producer's send time (ms); CloudEvent `time` is when
    the event was made (µs). All processes read the same system clock.
      intake -> Kafka:   EligibilityAssessed sent by intake's relay - ProjectSubmitted made
      Kafka -> partners: AssignmentRequested made by partners' consumer - that send
      partners decides:  PartnersAssigned sent by partners' relay - AssignmentRequested made
      Kafka -> intake:   PartnersRecorded made by intake's consumer - that send
    """
    import json

    def index(records: list[Any]) -> dict[tuple[str, str], tuple[float, float]]:
        out = {}
        for r in records:
            env = json.loads(r.value)
            name = env["type"].split(".")[2]
            made = datetime.fromisoformat(env["time"].replace("Z", "+00:00")).timestamp()
            out.setdefault((env["subject"], name), (made, r.timestamp / 1000))
        return out

    intake = index(await read_topic(bootstrap, intake_topic))
    partners = index(await read_topic(bootstrap, partners_topic))
    legs: dict[str, list[float]] = {"intake -> Kafka": [], "Kafka -> partners": [], "partners decides + relays": [],
                                    "Kafka -> intake": []}
    for r in results:
        pid = r["id"]
        try:
            submitted = intake[(pid, "ProjectSubmitted")][0]
            assessed_sent = intake[(pid, "EligibilityAssessed")][1]
            requested = partners[(pid, "AssignmentRequested")][0]
            assigned_sent = partners[(pid, "PartnersAssigned")][1]
            recorded = intake[(pid, "PartnersRecorded")][0]
        except KeyError:
            continue
        legs["intake -> Kafka"].append(1000 * (assessed_sent - submitted))
        legs["Kafka -> partners"].append(1000 * (requested - assessed_sent))
        legs["partners decides + relays"].append(1000 * (assigned_sent - requested))
        legs["Kafka -> intake"].append(1000 * (recorded - assigned_sent))
    return {leg: {"p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1), "n": len(v)}
            for leg, v in legs.items()}


def _stats(results: list[dict[str, Any]], key: str) -> tuple[float, float]:
    values = [r[key] for r in results]
    return percentile(values, 50), percentile(values, 99)


async def run(infra: Infra, stack: Any, *, sequential: int, concurrency: int, concurrent: int, poll_ms: float,
              wait_partners_minutes: float, log: Callable[[str], None], spy: Spy | None = None
              ) -> tuple[list[Figure], dict[str, Any]]:
    spy = spy or Spy(False)
    missing = await wait_for_partners(wait_partners_minutes, log)
    if missing is not None:
        note = f"not measured: {missing}"
        return [Figure(PART, "events p50", float("nan"), "ms", ("<=", TARGET_P50_MS), note),
                Figure(PART, "events p99", float("nan"), "ms", ("<=", TARGET_P99_MS), note)], {"skipped": missing}

    prefix = infra.prefix("rt")
    data_dir = infra.work_dir / "rt"
    for db in ("bench_rt_intake", "bench_partners"):
        infra.reset_database(db)
    intake_settings = infra.settings("intake", "bench_rt_intake", prefix, data_dir)
    partners_settings = infra.settings("partners", "bench_partners", prefix, data_dir)
    await infra.create_topics(intake_settings)
    officer = {"Authorization": f"Bearer {issue_token(intake_settings, 'intake_officer', sub='bench')}"}
    # Polls as an auditor: reads everything, and intake does not decrypt the promoter for it.
    reader = {"Authorization": f"Bearer {issue_token(intake_settings, 'auditor', sub='bench-reader')}"}

    intake = ServiceProcess("intake", infra, intake_settings)
    partners = ServiceProcess("partners", infra, partners_settings)
    stack.callback(intake.stop)
    stack.callback(partners.stop)
    intake.start()
    partners.start()
    await asyncio.gather(intake.wait_ready(), partners.wait_ready())
    log(f"intake on {intake.base_url} (pid {intake.pid}), partners on {partners.base_url} (pid {partners.pid}), "
        f"topics {prefix}*")

    # As large as partners accepts (its API caps capacity at MAX_CAPACITY): never a limit here.
    from services.partners.domain import MAX_CAPACITY

    capacity = min(100_000, MAX_CAPACITY)
    async with httpx.AsyncClient(base_url=partners.base_url, timeout=30) as client:
        for body in (
            {"name": "Bench support structure", "kind": "support_structure", "region": "FR-IDF", "countries": [],
             "sectors": [], "capacity": capacity},
            {"name": "Bench local operator", "kind": "local_operator", "countries": ["SN"], "sectors": ["trade"],
             "capacity": capacity},
        ):
            response = await client.post("/v1/partners", json=body, headers=officer)
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/partners: {response.status_code} {response.text[:300]}")

    poll_s = poll_ms / 1000
    cpu_names = infra.cpu_names(intake=intake.pid, partners=partners.pid)
    limits = httpx.Limits(max_connections=2 * max(1, concurrency), max_keepalive_connections=2 * max(1, concurrency))
    watcher = Watcher(infra.kafka, intake_settings.topic("intake.events"))
    await watcher.start()
    runs: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(base_url=intake.base_url, timeout=30, limits=limits) as client:
            # Warm-up: consumer groups join (the broker delays a new group's first rebalance), first calls.
            log("warm-up: first dossiers through the whole flow (consumer groups joining)")
            t0 = time.perf_counter()
            warm = await series(client, officer, reader, f"{infra.run_id}rtwarm", 3, 1, 0.05, None)
            log(f"  first dossier assigned after {warm[0]['client_ms'] / 1000:.1f} s; "
                f"warm-up {time.perf_counter() - t0:.1f} s")
            await series(client, officer, reader, f"{infra.run_id}rtwarm2", 5, 1, None, watcher)

            plan = [
                ("1 at a time", sequential, 1, None, "kafka"),
                (f"1 at a time, polling {poll_ms:g} ms", sequential, 1, poll_s, "poll"),
                (f"{concurrency} at a time", concurrent, concurrency, None, "kafka"),
            ]
            for label, count, conc, poll, how in plan:
                if count <= 0:
                    continue
                log(f"{count} dossiers, {label}" + (" (completion seen on Kafka: no polling)" if how == "kafka" else ""))
                tag = f"{infra.run_id}rt{len(runs)}"
                spy.start(intake.pid, infra.work_dir / f"profile-roundtrip-{len(runs)}-intake.txt")
                spy.start(partners.pid, infra.work_dir / f"profile-roundtrip-{len(runs)}-partners.txt")
                meter = CpuMeter(cpu_names).start()
                results = await series(client, officer, reader, tag, count, conc, poll,
                                       watcher if how == "kafka" else None)
                cpu = meter.stop()
                runs.append({"label": label, "count": count, "concurrency": conc, "wait": how,
                             "results": results, "cpu": cpu, "profiles": spy.stop()})
    finally:
        await watcher.stop()
    intake.stop()
    partners.stop()

    figures: list[Figure] = []
    details: dict[str, Any] = {
        "method": ("events: at(PartnersRecorded) - at(ProjectSubmitted) in the dossier's timeline (intake's clock); "
                   "client: POST sent -> PartnersRecorded seen on Kafka (wait=kafka) or a poll sees assigned (wait=poll)"),
        "poll_ms": poll_ms, "partner_capacity": capacity,
        "warmup_first_dossier_s": round(warm[0]["client_ms"] / 1000, 2), "series": [],
    }
    for run_ in runs:
        results = run_["results"]
        try:
            legs = await hops(infra.kafka, intake_settings.topic("intake.events"),
                              intake_settings.topic("partners.events"), results)
        except Exception as exc:  # noqa: BLE001 - the breakdown explains, it is not a figure
            log(f"no breakdown of the round trip: {exc!r}")
            legs = {}
        e50, e99 = _stats(results, "events_ms")
        c50, c99 = _stats(results, "client_ms")
        label, main = run_["label"], run_["wait"] == "kafka"
        polls = sum(r["polls"] for r in results) / max(1, len(results))
        client_note = (f"POST sent -> PartnersRecorded seen on Kafka: p99 {c99:.1f} ms" if main else
                       f"POST sent -> poll sees assigned: p99 {c99:.1f} ms; {polls:.1f} polls per dossier")
        figures += [
            Figure(PART, f"{label} ({len(results)}): events p50", e50, "ms", ("<=", TARGET_P50_MS) if main else None,
                   note="at(PartnersRecorded) - at(ProjectSubmitted), intake's clock"),
            Figure(PART, f"{label}: events p99", e99, "ms", ("<=", TARGET_P99_MS) if main else None,
                   note=short_cpu(run_["cpu"])),
            Figure(PART, f"{label}: client p50", c50, "ms", note=client_note),
        ]
        if main:
            figures += [Figure(PART, f"  leg: {leg}", v["p50_ms"], "ms", note=f"p50; p99 {v['p99_ms']} ms")
                        for leg, v in legs.items()]
        details["series"].append({
            "label": label, "wait": run_["wait"], "count": len(results), "concurrency": run_["concurrency"],
            "events_p50_ms": e50, "events_p99_ms": e99, "client_p50_ms": c50, "client_p99_ms": c99,
            "legs": legs, "cpu": run_["cpu"], "profiles": run_["profiles"],
            "events_ms": [round(r["events_ms"], 2) for r in results],
        })
    return figures, details
