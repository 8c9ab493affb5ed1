"""The auditor's command line: replay every topic from Kafka, verify, report, export the ledger.

    make audit                      # against `make run`'s broker (127.0.0.1:9092)
    make audit ARGS="--as-of 2026-06-30"
    python -m services.audit.cli --bootstrap host:9092 --keys "<verifier key>,..." --out var/audit

Needs nothing but the broker and the services' verifier keys (GET /v1/keys of
each service, obtained from a channel the auditor trusts). Writes to --out the
verification report (report.json) and the ledger of public-funds decisions with
the envelopes' totals as of --as-of (ledger.json, ledger.csv, envelopes.csv);
exits 1 when a problem is found.
"""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from shared.ledger import COLUMNS
from shared.settings import Settings

cli = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
console = Console()


@cli.command()
def verify(
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers (default: PASSERELLE_KAFKA_BOOTSTRAP_SERVERS)"),
    keys: str = typer.Option("", help="trusted verifier keys, comma separated (default: the development keys)"),
    topic_prefix: str = typer.Option(None, help="topic prefix (default: PASSERELLE_TOPIC_PREFIX)"),
    out: Path = typer.Option(Path("var/audit"), help="where the report and the ledger go"),
    as_of: datetime = typer.Option(None, formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"],
                                   help="the ledger as it stood then (default: now); a date means its end, UTC"),
) -> None:
    """Replay every service's topic and the checkpoints from offset 0, verify them, export the ledger."""
    overrides = {"service": "audit", "audit_verifier_keys": keys}
    if bootstrap:
        overrides["kafka_bootstrap_servers"] = bootstrap
    if topic_prefix is not None:
        overrides["topic_prefix"] = topic_prefix
    settings = Settings().model_copy(update=overrides)
    auditor = AuditApplication(settings)
    replay = Replay(auditor, settings)

    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bars:
        tasks: dict[str, int] = {}

        def progress(done: dict[str, tuple[int, int]]) -> None:
            for topic, (read, total) in done.items():
                if topic not in tasks:
                    tasks[topic] = bars.add_task(topic, total=total)
                bars.update(tasks[topic], completed=read, total=total)

        asyncio.run(replay.replay_once(progress))

    report = auditor.verification()
    table = Table(title="Passerelle: the logs as Kafka shows them")
    for column in ("service", "events", "tree size", "verified checkpoint", "unverified", "problems"):
        table.add_column(column, justify="right" if column not in ("service", "verified checkpoint") else "left")
    for name, log in report["services"].items():
        checkpoint = log["verified_checkpoint"]
        table.add_row(name, str(log["events_seen"]), str(log["size"]),
                      f"{checkpoint['size']} ({checkpoint['root'][:16]}...)" if checkpoint else "none",
                      str(log["unverified_events"]), str(len(log["problems"])))
    console.print(table)
    for name, log in report["services"].items():
        if log["waiting"]:
            waiting = log["waiting"]
            console.print(f"[yellow]{name}[/yellow] no record at {waiting['at']} yet; {waiting['records']} records "
                          f"after it wait, up to {waiting['last']} (missing once a checkpoint covers it)")
        for problem in log["problems"]:
            console.print(f"[red]{name}[/red] {problem['kind']} at {problem['sequence']}: {problem['detail']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    moment = None if as_of is None else _end_of(as_of)
    ledger = auditor.ledger_as_of(moment)
    (out / "ledger.json").write_text(json.dumps(ledger, indent=2))
    with open(out / "ledger.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: d.get(c) for c in COLUMNS} for d in ledger["decisions"])
    with open(out / "envelopes.csv", "w", newline="") as f:
        fields = ["id", "purpose", "year", "scope", "allocated_cents", "reserved_cents", "disbursed_cents",
                  "available_cents"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ledger["envelopes"])
    console.print(f"ledger as of {ledger['as_of'] or 'now'}: {len(ledger['decisions'])} decisions, "
                  f"{len(ledger['envelopes'])} envelopes")
    console.print(f"written: {out / 'report.json'}, {out / 'ledger.json'}, {out / 'ledger.csv'}, {out / 'envelopes.csv'}")
    raise typer.Exit(0 if report["ok"] else 1)


def _end_of(moment: datetime) -> datetime:
    """A time with its zone as given; a bare date: the end of that day, UTC."""
    if moment.tzinfo is None:
        return moment.replace(hour=23, minute=59, second=59, microsecond=999999, tzinfo=timezone.utc)
    return moment


if __name__ == "__main__":
    cli()
