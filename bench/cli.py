"""`python -m bench`: runs the parts in order, prints the table, writes var/bench/results.json."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bench.infra import STOP, Infra, Spy, dump_json, machine_facts
from bench.report import Figure, print_table
from shared.settings import REPO_ROOT

PARTS = ("commands", "relay", "roundtrip", "decisions", "followup", "audit")
console = Console(width=170, stderr=True)
app = typer.Typer(add_completion=False, help=__doc__)


def _log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def _term_as_interrupt(signum: int, frame: Any) -> None:
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


@app.command()
def main(
    parts: Annotated[str, typer.Option(envvar="BENCH_PARTS", help="comma-separated: " + ",".join(PARTS))] = ",".join(PARTS),
    clients: Annotated[str, typer.Option(envvar="BENCH_CLIENTS", help="concurrency levels of part 1")] = "1,8,32",
    warmup: Annotated[float, typer.Option(envvar="BENCH_WARMUP", help="seconds not measured, per level")] = 2.0,
    duration: Annotated[float, typer.Option(envvar="BENCH_DURATION", help="measured seconds, per level and series")] = 8.0,
    relay_events: Annotated[int, typer.Option(envvar="BENCH_RELAY_EVENTS", help="events pre-written for part 2")] = 20_000,
    relay_repeats: Annotated[int, typer.Option(envvar="BENCH_RELAY_REPEATS", help="runs of relay and raw (median)")] = 3,
    roundtrips: Annotated[int, typer.Option(envvar="BENCH_ROUNDTRIPS", help="dossiers submitted one at a time")] = 100,
    roundtrip_concurrency: Annotated[int, typer.Option(envvar="BENCH_ROUNDTRIP_CONCURRENCY",
                                                       help="dossiers in flight in the second round-trip series")] = 4,
    roundtrips_concurrent: Annotated[int, typer.Option(envvar="BENCH_ROUNDTRIPS_CONCURRENT",
                                                       help="dossiers of the concurrent series")] = 100,
    poll_ms: Annotated[float, typer.Option(envvar="BENCH_POLL_MS", help="GET /v1/projects/{id} every this often")] = 5.0,
    wait_partners: Annotated[float, typer.Option(envvar="BENCH_WAIT_PARTNERS_MINUTES",
                                                 help="how long to wait for services/partners to exist")] = 40.0,
    decisions: Annotated[int, typer.Option(envvar="BENCH_DECISIONS",
                                           help="part 4: approvals per level and series")] = 300,
    decision_clients: Annotated[str, typer.Option(envvar="BENCH_DECISION_CLIENTS",
                                                  help="part 4: concurrency levels")] = "1,8,32",
    layers: Annotated[bool, typer.Option(envvar="BENCH_LAYERS",
                                         help="part 1: also submit_project in-process (no HTTP), to explain it")] = True,
    profile: Annotated[bool, typer.Option(envvar="BENCH_PROFILE",
                                          help="py-spy the services during parts 1 and 3 (needs py-spy in the venv)")] = False,
    audit_events: Annotated[int, typer.Option(envvar="BENCH_AUDIT_EVENTS",
                                              help="events of the audit part (its replay), over the 4 logs")] = 1_000_000,
    audit_repeats: Annotated[int, typer.Option(envvar="BENCH_AUDIT_REPEATS",
                                               help="rounds of raw consume then audit (medians)")] = 3,
    followup_dossiers: Annotated[int, typer.Option(envvar="BENCH_FOLLOWUP_DOSSIERS",
                                                   help="part followup: dossiers in follow-up")] = 200,
    followup_visits: Annotated[int, typer.Option(envvar="BENCH_FOLLOWUP_VISITS",
                                                 help="part followup: visits logged per concurrency level")] = 1000,
    followup_clients: Annotated[str, typer.Option(envvar="BENCH_FOLLOWUP_CLIENTS",
                                                  help="part followup: concurrency levels")] = "1,8",
    indicator_queries: Annotated[int, typer.Option(envvar="BENCH_INDICATOR_QUERIES",
                                                   help="part followup: indicator queries per kind")] = 30,
    out: Annotated[Path, typer.Option(envvar="BENCH_OUT")] = REPO_ROOT / "var" / "bench" / "results.json",
) -> None:
    """Measure the command path, the relay, the round trip, decisions, follow-up and the audit; print the figures."""
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _term_as_interrupt)
    signal.signal(signal.SIGINT, _term_as_interrupt)
    chosen = [p for p in parts.split(",") if p]
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise typer.BadParameter(f"unknown parts {sorted(unknown)}; choose among {PARTS}")
    infra = Infra.from_env(out.parent)
    infra.check_reachable()
    facts: dict[str, Any] = {"machine": machine_facts(), "postgres": infra.pg_facts(),
                             "kafka": infra.kafka, "run_id": infra.run_id}
    sizes = {"parts": chosen, "clients": _ints(clients), "warmup_s": warmup, "duration_s": duration,
             "relay_events": relay_events, "relay_repeats": relay_repeats, "roundtrips": roundtrips,
             "roundtrip_concurrency": roundtrip_concurrency, "roundtrips_concurrent": roundtrips_concurrent,
             "poll_ms": poll_ms, "profile": profile, "layers": layers, "decisions": decisions,
             "decision_clients": _ints(decision_clients), "followup_dossiers": followup_dossiers,
             "followup_visits": followup_visits, "followup_clients": _ints(followup_clients),
             "indicator_queries": indicator_queries, "audit_events": audit_events, "audit_repeats": audit_repeats}
    _log(f"run {infra.run_id}: {facts['machine']['cores']} cores, load {facts['machine']['load_average_at_start']}, "
         f"PostgreSQL {facts['postgres']['server_version']} at {infra.pg['host']}:{infra.pg['port']}, Kafka {infra.kafka}")
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    started = time.perf_counter()
    results: dict[str, Any] = {}

    def save(status: str) -> None:
        results.update({
            "status": status,
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "elapsed_s": round(time.perf_counter() - started, 1),
            "facts": facts, "sizes": sizes,
            "figures": [f.as_dict() for f in figures],
            "details": details,
        })
        dump_json(out, results)

    async def run_all() -> None:
        with contextlib.ExitStack() as stack:
            if "commands" in chosen:
                from bench import commands

                f, d = await commands.run(infra, stack, levels=_ints(clients), warmup=warmup, duration=duration,
                                          log=_log, spy=Spy(profile), layers=layers)
                figures.extend(f)
                details["commands"] = d
                save("partial")
            if "relay" in chosen:
                from bench import relay

                f, d = await relay.run(infra, stack, events=relay_events, repeats=relay_repeats, log=_log)
                figures.extend(f)
                details["relay"] = d
                save("partial")
            if "roundtrip" in chosen:
                from bench import roundtrip

                f, d = await roundtrip.run(infra, stack, sequential=roundtrips, concurrency=roundtrip_concurrency,
                                           concurrent=roundtrips_concurrent, poll_ms=poll_ms,
                                           wait_partners_minutes=wait_partners, log=_log,
                                           spy=Spy(profile))
                figures.extend(f)
                details["roundtrip"] = d
                save("partial")
            if "decisions" in chosen:
                from bench import decisions as decisions_part

                f, d = await decisions_part.run(infra, stack, levels=_ints(decision_clients), decisions=decisions,
                                                log=_log)
                figures.extend(f)
                details["decisions"] = d
                save("partial")
            if "followup" in chosen:
                from bench import followup

                f, d = await followup.run(infra, stack, dossiers=followup_dossiers, visits=followup_visits,
                                          levels=_ints(followup_clients), queries=indicator_queries, log=_log)
                figures.extend(f)
                details["followup"] = d
                save("partial")
            if "audit" in chosen:
                from bench import audit

                f, d = await audit.run(infra, stack, events=audit_events, repeats=audit_repeats, log=_log)
                figures.extend(f)
                details["audit"] = d

    status = "complete"
    try:
        asyncio.run(run_all())
    except KeyboardInterrupt:
        STOP.set()
        status = "interrupted"
        _log("[yellow]interrupted: every process started was stopped[/]")
    except Exception:
        status = "failed"
        import traceback

        traceback.print_exc()
    import os

    facts["elapsed_s"] = round(time.perf_counter() - started, 1)
    facts["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    facts["sizes"] = sizes
    save(status)
    print_table(figures, {"status": status, "results": str(out), **facts}, Console(width=170))
    if status != "complete":
        sys.exit(1)
