"""Part 5: followup — visit logging throughput and indicator query latency.

Followup runs as a real process (`python -m services.followup.main`, PostgreSQL store,
its relay, consumer, projector and scheduler) on a fresh database (bench_followup) and
a fresh topic prefix. Follow-ups open only on funding's first tranche, so the bench
plays funding and partners: it produces their records on its own topics, as their
relays make them (one rule version with a visit every month for five years, then per
dossier ProjectSubmitted, PartnersAssigned, FinancingApproved and FundsDisbursed tranche 1). Every
business is launched five years ago through the API (`POST .../launch`).

Measured:
  - `POST /v1/followups/{id}/visits` (each a new visit, spread over the dossiers) by N
    concurrent clients, a fixed number of visits per level: visits/s, p50 and p99;
  - `GET /v1/indicators` one at a time once the read models have caught up: the whole
    programme, one country, and one country as of a moment half-way through the visits.
No targets: the issue asks for the figures.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import httpx
from aiokafka import AIOKafkaProducer

from bench.infra import CpuMeter, Infra, ServiceProcess, percentile, short_cpu
from bench.report import Figure
from shared.auth import issue_token
from shared.envelope import record_from_state

PART = "5 followup"
RULE_VERSION = "bench-1"
VISIT_MONTHS = list(range(1, 61))  # room for many visits per dossier before the plan ends


def _record(service: str, name: str, subject: str, version: int, sequence: int, at: datetime,
            data: dict[str, Any]) -> tuple[bytes, bytes]:
    state = {"timestamp": at, "_meta": {"actor": f"service:{service}", "codeversion": "bench"}, **data}
    return subject.encode(), record_from_state(service, name, 1, subject, version, state, sequence)[1]


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for done in [await producer.send(topic, value=value, key=key) for key, value in records]:
            await done
    finally:
        await producer.stop()


async def _processed(client: httpx.AsyncClient) -> int:
    """Records followup's consumer has processed, from its /metrics."""
    text = (await client.get("/metrics")).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("passerelle_consumer_processed_total{"))


async def _wait(what: str, done: Callable[[], Any], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"followup bench: {what} did not happen in {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def run(infra: Infra, stack: Any, *, dossiers: int, visits: int, levels: list[int], queries: int,
              log: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
    prefix = infra.prefix("fu")
    infra.reset_database("bench_followup")
    settings = infra.settings("followup", "bench_followup", prefix, infra.work_dir / "followup")
    await infra.create_topics(settings)
    service = ServiceProcess("followup", infra, settings)
    stack.callback(service.stop)
    service.start()
    await service.wait_ready()
    log(f"followup on {service.base_url} (pid {service.pid}), database bench_followup, topics {prefix}*")
    officer = {"Authorization": f"Bearer {issue_token(settings, 'followup_officer', sub='bench')}"}
    limits = httpx.Limits(max_connections=max(levels + [8]), max_keepalive_connections=max(levels + [8]))
    async with httpx.AsyncClient(base_url=service.base_url, headers=officer, limits=limits, timeout=60) as client:
        # --- dossiers financed, as funding and partners would tell followup ---
        now = datetime.now(timezone.utc)
        operator = str(uuid.uuid4())
        await _produce(infra.kafka, settings.topic("funding.events"), [_record(
            "funding", "ProgrammeRulesPublished", str(uuid.uuid4()), 1, 0, now, {
                "version": RULE_VERSION, "min_planned_jobs": 1, "return_aid": {},
                "countries": {c: {"in_programme": True, "visit_months": VISIT_MONTHS} for c in ("SN", "ML")}})])
        await _wait("the rules taken in", lambda: _above(client, 1))
        ids = [str(uuid.uuid4()) for _ in range(dossiers)]
        intake = [_record("intake", "ProjectSubmitted", p, 1, n, now - timedelta(days=400), {
            "country": "SN" if n % 2 == 0 else "ML", "own_contribution_cents": 100_000, "planned_jobs": 3,
            "french_region": "FR-IDF", "sector": "trade", "title": "bench", "description": "",
            "requested_amount_cents": 500_000, "reference": f"PAS-B-{n}", "person_id": p,
            "promoter_ciphertext": "-"}) for n, p in enumerate(ids)]
        partners = [_record("partners", "PartnersAssigned", p, 2, n, now, {
            "project_id": p, "support_structure_id": operator, "local_operator_id": operator,
            "sector_matched": True}) for n, p in enumerate(ids)]
        funding = []
        for n, p in enumerate(ids):
            funding.append(_record("funding", "FinancingApproved", p, 4, 1 + 2 * n, now, {
                "amount_cents": 500_000, "rule_version": RULE_VERSION, "approved_by": "user:b",
                "proposed_by": "user:a", "justification": "bench", "envelope_id": operator,
                "dossier_version": 8, "code_version": "bench"}))
            funding.append(_record("funding", "FundsDisbursed", p, 7, 2 + 2 * n, now, {
                "tranche": 1, "amount_cents": 250_000, "payee": "operator", "payment_reference": f"B-{n}",
                "envelope_id": operator}))
        t0 = time.perf_counter()
        await _produce(infra.kafka, settings.topic("intake.events"), intake)
        await _produce(infra.kafka, settings.topic("partners.events"), partners)
        await _produce(infra.kafka, settings.topic("funding.events"), funding)
        await _wait("the follow-ups opened", lambda: _above(client, 1 + 4 * dossiers))
        opened_s = time.perf_counter() - t0
        log(f"{dossiers} follow-ups opened from {4 * dossiers} upstream records in {opened_s:.1f} s")

        launched_on = date.today() - timedelta(days=5 * 365)
        semaphore = asyncio.Semaphore(8)

        async def launch(project_id: str) -> None:
            async with semaphore:
                response = await client.post(f"/v1/followups/{project_id}/launch", json={
                    "launched_on": launched_on.isoformat(), "legal_form": "GIE", "registration": "R",
                    "initial_jobs": 1, "own_contribution_cents": 50_000})
                if response.status_code != 200:
                    raise RuntimeError(f"launch: {response.status_code} {response.text[:300]}")

        await asyncio.gather(*(launch(p) for p in ids))

        # --- visit logging ---
        figures: list[Figure] = []
        details: dict[str, Any] = {"dossiers": dossiers, "opened_s": round(opened_s, 2), "levels": []}
        counter = 0
        middle: datetime | None = None
        for n in levels:
            latencies: list[float] = []
            errors: dict[str, int] = {}
            queue: asyncio.Queue[int] = asyncio.Queue()
            for _ in range(visits):
                queue.put_nowait(counter)
                counter += 1

            async def worker() -> None:
                while True:
                    try:
                        k = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    project_id = ids[k % dossiers]
                    visited_on = launched_on + timedelta(days=1 + k // dossiers)
                    body = {"visit_id": f"{infra.run_id}-{k}", "visited_on": visited_on.isoformat(),
                            "business_status": "active" if k % 7 else "in_difficulty",
                            "jobs": {"paid": 2, "family": 1}, "revenue_band": "150_to_500",
                            "observations": "bench", "recommendations": ""}
                    started = time.perf_counter()
                    response = await client.post(f"/v1/followups/{project_id}/visits", json=body)
                    if response.status_code == 201:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

            log(f"visits: {visits} by {n} client(s)")
            meter = CpuMeter(infra.cpu_names(followup=service.pid)).start()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(n)))
            elapsed = time.perf_counter() - started
            cpu = meter.stop()
            if middle is None:
                middle = datetime.now(timezone.utc)
            rate = len(latencies) / elapsed if elapsed else float("nan")
            p50, p99 = 1000 * percentile(latencies, 50), 1000 * percentile(latencies, 99)
            details["levels"].append({"clients": n, "visits_per_s": round(rate, 1), "p50_ms": round(p50, 1),
                                      "p99_ms": round(p99, 1), "errors": errors, "cpu": cpu})
            note = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {short_cpu(cpu)}" + (f"; errors {errors}" if errors else "")
            figures.append(Figure(PART, f"N={n} POST .../visits", rate, "visits/s", note=note))
            log(f"  N={n}: {rate:.0f} visits/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")

        # --- indicators, once the read models have caught up ---
        await service.wait_quiet()
        # DossierNoted, SubmissionNoted, LocalOperatorNoted, FinancingNoted, FollowUpOpened, BusinessLaunched,
        # then the visits and the alerts they raised or resolved.
        total_facts = 6 * dossiers + counter
        for label, params in (("programme", {}), ("country SN", {"country": "SN"}),
                              ("as of the first level's end", {"as_of": middle.isoformat() if middle else None})):
            latencies = []
            for _ in range(queries):
                started = time.perf_counter()
                response = await client.get("/v1/indicators", params={k: v for k, v in params.items() if v})
                if response.status_code != 200:
                    raise RuntimeError(f"indicators: {response.status_code} {response.text[:300]}")
                latencies.append(time.perf_counter() - started)
            p50, p99 = 1000 * percentile(latencies, 50), 1000 * percentile(latencies, 99)
            followed = response.json()["dossiers_followed"]
            figures.append(Figure(PART, f"GET /v1/indicators ({label}) p50", p50, "ms",
                                  note=f"p99 {p99:.1f} ms; {followed} dossiers followed, about {total_facts} "
                                       f"follow-up events; {queries} queries one at a time"))
            details[f"indicators {label}"] = {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "followed": followed}
            log(f"indicators ({label}): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    service.stop()
    return figures, details


async def _above(client: httpx.AsyncClient, count: int) -> bool:
    try:
        return await _processed(client) >= count
    except (httpx.HTTPError, ValueError, IndexError):
        return False
