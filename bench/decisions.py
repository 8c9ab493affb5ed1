"""Part 4: financing decisions, four-eyes, on a real funding process: throughput and latency.

`POST /v1/financing/{id}/decision` (approve) with N concurrent HTTP clients against funding
served by a real uvicorn process (`python -m services.funding.main`, PostgreSQL store, relay
to Kafka, projector and consumers running). Every approval loads the dossier and its
envelope, reserves the amount on the envelope and saves both in one transaction.

Two series per level, K decisions each, on dossiers proposed beforehand (in this process,
straight into the service's store):
  - one envelope: every approval draws on the same envelope, as when a committee decides
    for one country; racing approvals lose the optimistic-concurrency check and decide
    again (`shared.conflicts.retry_on_conflict`): the cost of never over-committing;
  - one envelope per country: the dossiers spread over the programme's countries, each
    with its own envelope; approvals rarely meet.
After each series the envelopes must hold exactly the sum of the approvals (checked).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import httpx

from bench.infra import CpuMeter, Infra, ServiceProcess, percentile, short_cpu
from bench.report import Figure
from services.funding.application import FundingApplication, example_rules
from services.funding.domain import Dossier, Envelope, Purpose
from shared.auth import issue_token

PART = "4 decisions"
AMOUNT = 500_000


def propose_dossiers(app: FundingApplication, countries: list[str], count: int, year: int) -> list[str]:
    """`count` dossiers at the committee with a proposal each, spread over `countries`; one save each."""
    rules = app.rules_in_force()
    envelopes = {c: app.get_envelope(Envelope.create_id(Purpose.business_creation, year, c)) for c in countries}
    ids = []
    for n in range(count):
        country = countries[n % len(countries)]
        dossier = Dossier(project_id=uuid.uuid4(), country=country, eligibility_rule_version=rules.version)
        dossier.request_financing(AMOUNT, dossier_version=8)
        dossier.propose(rules, envelopes[country], AMOUNT, "bench", proposed_by="user:bench-officer")
        app.save(dossier)
        ids.append(str(dossier.id))
    return ids


async def approve_all(base_url: str, token: str, ids: list[str], clients: int,
                      cpu_names: dict[int, str]) -> dict[str, Any]:
    """Approve every dossier of `ids` with `clients` concurrent clients; latencies of the 200s."""
    queue = list(reversed(ids))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    body = {"decision": "approve", "justification": "bench"}
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=60) as client:
        async def worker() -> None:
            while queue:
                project_id = queue.pop()
                t0 = time.perf_counter()
                try:
                    response = await client.post(f"/v1/financing/{project_id}/decision", json=body)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    key = f"HTTP {response.status_code} {response.json().get('rule', '')}".strip()
                    errors[key] = errors.get(key, 0) + 1

        meter = CpuMeter(cpu_names).start()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        cpu = meter.stop()
    ms = [x * 1000 for x in latencies]
    return {"clients": clients, "decisions": len(ids), "approved": len(latencies), "elapsed_s": round(elapsed, 3),
            "decisions_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
            "errors": errors, "cpu": cpu}


async def run(infra: Infra, stack: Any, *, levels: list[int], decisions: int, log: Callable[[str], None]
              ) -> tuple[list[Figure], dict[str, Any]]:
    prefix = infra.prefix("decisions")
    infra.reset_database("bench_funding")
    settings = infra.settings("funding", "bench_funding", prefix, infra.work_dir / "decisions")
    await infra.create_topics(settings)
    funding = ServiceProcess("funding", infra, settings)
    stack.callback(funding.stop)
    funding.start()
    await funding.wait_ready()
    cpu_names = infra.cpu_names(funding=funding.pid)
    log(f"funding on {funding.base_url} (pid {funding.pid}), database bench_funding, topics {prefix}*")

    # The rules and the envelopes, straight into the service's store (the service reads them from it).
    app = FundingApplication(settings)
    stack.callback(app.close)
    rules = example_rules()
    app.publish_rules(rules["version"], rules["countries"], rules["return_aid"], rules["min_planned_jobs"])
    countries = sorted(rules["countries"])
    year = datetime.now(timezone.utc).year
    per_envelope = AMOUNT * decisions * len(levels) * 2
    for country in countries:
        app.open_envelope(Purpose.business_creation, year, country, per_envelope)
    token = issue_token(settings, "funding_approver", sub="bench-approver")

    warm = await asyncio.to_thread(propose_dossiers, app, countries, 20, year)
    await approve_all(funding.base_url, token, warm, 2, cpu_names)
    await funding.wait_quiet()

    figures: list[Figure] = []
    details: dict[str, Any] = {"levels": []}
    for n in levels:
        for series, spread in (("one envelope", ["SN"]), ("one envelope per country", countries)):
            ids = await asyncio.to_thread(propose_dossiers, app, spread, decisions, year)
            await funding.wait_quiet()
            before = {c: app.get_envelope(Envelope.create_id(Purpose.business_creation, year, c)).reserved_cents
                      for c in spread}
            log(f"{decisions} approvals, {n} client(s), {series}")
            result = await approve_all(funding.base_url, token, ids, n, cpu_names)
            reserved = sum(app.get_envelope(Envelope.create_id(Purpose.business_creation, year, c)).reserved_cents
                           - before[c] for c in spread)
            # Never over-committed, never lost: the envelopes hold exactly the approvals made.
            consistent = reserved == AMOUNT * result["approved"]
            result.update(series=series, envelopes_consistent=consistent)
            details["levels"].append(result)
            errors = f"; errors {result['errors']}" if result["errors"] else ""
            figures += [
                Figure(PART, f"N={n} approvals/s, {series}", result["decisions_per_s"], "decisions/s",
                       note=f"{result['approved']} approved in {result['elapsed_s']} s; envelope totals "
                            f"{'exact' if consistent else 'WRONG'}{errors}; {short_cpu(result['cpu'])}"),
                Figure(PART, f"N={n} approval latency p50, {series}", result["p50_ms"], "ms",
                       note=f"p99 {result['p99_ms']} ms"),
            ]
            log(f"  N={n} {series}: {result['decisions_per_s']} decisions/s, p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms{errors}")
            await funding.wait_quiet()
    funding.stop()
    return figures, details
