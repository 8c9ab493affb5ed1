"""Part 3: the round trip ProjectSubmitted -> PartnersRecorded, through intake, Kafka and partners.

Intake and partners run as real processes on fresh databases (bench_rt_intake,
bench_partners) and a fresh topic prefix. One support structure (FR-IDF) and one local
operator (SN, trade) with capacity 100,000 are registered through partners' API, then
dossiers are submitted (`POST /v1/projects`), one at a time and then a few at a time,
each polled with `GET /v1/projects/{id}` until its status is "assigned".

The flow measured: intake saves ProjectSubmitted + EligibilityAssessed -> intake's relay
publishes to intake.events -> partners' consumer assigns (AssignmentRequested,
PartnersAssigned) -> partners' relay publishes to partners.events -> intake's consumer
saves PartnersRecorded.

Two measures of each dossier:
  - events (the figure with the target): `at` of PartnersRecorded minus `at` of
    ProjectSubmitted in the dossier's timeline. Both timestamps are taken by the same
    process (intake) on the same clock when the events are made, just before each is
    saved; polling does not blur it.
  - client: from just before the POST is sent to the first poll that sees "assigned"
    (includes HTTP, the final commit and up to one poll interval).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from datetime import datetime
from typing import Any, Callable

import httpx

from bench.commands import dossier_body
from bench.infra import CpuMeter, Infra, ServiceProcess, percentile, short_cpu
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


async def one_dossier(client: httpx.AsyncClient, officer: dict[str, str], reader: dict[str, str], unique: str,
                      poll_s: float, timeout: float = 60.0) -> dict[str, Any]:
    t0 = time.perf_counter()
    response = await client.post("/v1/projects", json=dossier_body(unique), headers=officer)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/projects: {response.status_code} {response.text[:300]}")
    created = response.json()
    if created["status"] != "eligible":
        raise RuntimeError(f"the bench's dossier should be eligible, it is {created['status']}")
    deadline = t0 + timeout
    polls = 0
    while True:
        polls += 1
        got = await client.get(f"/v1/projects/{created['id']}", headers=reader)
        t1 = time.perf_counter()
        if got.status_code == 200 and got.json()["status"] == "assigned":
            break
        if t1 > deadline:
            raise RuntimeError(f"dossier {created['id']} not assigned after {timeout:.0f} s: {got.text[:300]}")
        await asyncio.sleep(poll_s)
    timeline = got.json()["timeline"]
    submitted, recorded = _at(timeline, "ProjectSubmitted"), _at(timeline, "PartnersRecorded")
    return {
        "id": created["id"],
        "client_ms": (t1 - t0) * 1000,
        "events_ms": (recorded - submitted).total_seconds() * 1000 if submitted and recorded else float("nan"),
        "polls": polls,
    }


async def series(client: httpx.AsyncClient, officer: dict[str, str], reader: dict[str, str], tag: str, count: int,
                 concurrency: int, poll_s: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            results.append(await one_dossier(client, officer, reader, f"{tag}n{i}", poll_s))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _stats(results: list[dict[str, Any]], key: str) -> tuple[float, float]:
    values = [r[key] for r in results]
    return percentile(values, 50), percentile(values, 99)


async def run(infra: Infra, stack: Any, *, sequential: int, concurrency: int, concurrent: int, poll_ms: float,
              wait_partners_minutes: float, log: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
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
    async with httpx.AsyncClient(base_url=intake.base_url, timeout=30, limits=limits) as client:
        # Warm-up: consumer groups join (the broker delays a new group's first rebalance), first calls.
        log("warm-up: first dossiers through the whole flow (consumer groups joining)")
        t0 = time.perf_counter()
        warm = await series(client, officer, reader, f"{infra.run_id}rtwarm", 3, 1, 0.05)
        log(f"  first dossier assigned after {warm[0]['client_ms'] / 1000:.1f} s; warm-up {time.perf_counter() - t0:.1f} s")
        await series(client, officer, reader, f"{infra.run_id}rtwarm2", 5, 1, poll_s)

        log(f"{sequential} dossiers one at a time, polling every {poll_ms:g} ms")
        meter = CpuMeter(cpu_names).start()
        one = await series(client, officer, reader, f"{infra.run_id}rt1", sequential, 1, poll_s)
        cpu_one = meter.stop()
        log(f"{concurrent} dossiers, {concurrency} at a time")
        meter = CpuMeter(cpu_names).start()
        many = await series(client, officer, reader, f"{infra.run_id}rtc", concurrent, concurrency, poll_s)
        cpu_many = meter.stop()

    intake.stop()
    partners.stop()
    e50, e99 = _stats(one, "events_ms")
    c50, c99 = _stats(one, "client_ms")
    m50, m99 = _stats(many, "events_ms")
    mc50, mc99 = _stats(many, "client_ms")
    polls = sum(r["polls"] for r in one) / max(1, len(one))
    figures = [
        Figure(PART, f"1 at a time ({len(one)}): events p50", e50, "ms", ("<=", TARGET_P50_MS),
               note="PartnersRecorded.at - ProjectSubmitted.at (intake's clock)"),
        Figure(PART, f"1 at a time ({len(one)}): events p99", e99, "ms", ("<=", TARGET_P99_MS),
               note=f"{short_cpu(cpu_one)}"),
        Figure(PART, "1 at a time: client p50 / p99", c50, "ms",
               note=f"POST sent -> poll sees assigned: p99 {c99:.1f} ms; {polls:.1f} polls per dossier "
                    f"every {poll_ms:g} ms"),
        Figure(PART, f"{concurrency} at a time ({len(many)}): events p50", m50, "ms", ("<=", TARGET_P50_MS)),
        Figure(PART, f"{concurrency} at a time ({len(many)}): events p99", m99, "ms", ("<=", TARGET_P99_MS),
               note=f"{short_cpu(cpu_many)}"),
        Figure(PART, f"{concurrency} at a time: client p50 / p99", mc50, "ms", note=f"p99 {mc99:.1f} ms"),
    ]
    details = {
        "method": "events: timeline at(PartnersRecorded) - at(ProjectSubmitted); client: POST sent -> poll sees assigned",
        "poll_ms": poll_ms,
        "warmup_first_dossier_s": round(warm[0]["client_ms"] / 1000, 2),
        "one_at_a_time": {"count": len(one), "events_p50_ms": e50, "events_p99_ms": e99, "client_p50_ms": c50,
                          "client_p99_ms": c99, "events_ms": [round(r["events_ms"], 2) for r in one], "cpu": cpu_one},
        "concurrent": {"concurrency": concurrency, "count": len(many), "events_p50_ms": m50, "events_p99_ms": m99,
                       "client_p50_ms": mc50, "client_p99_ms": mc99,
                       "events_ms": [round(r["events_ms"], 2) for r in many], "cpu": cpu_many},
    }
    return figures, details
