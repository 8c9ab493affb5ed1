"""The auditor's command line: replay every topic from Kafka, verify, report.

    make audit                      # against `make run`'s broker (127.0.0.1:9092)
    python -m services.audit.cli --bootstrap host:9092 --keys "<verifier key>,..." --out var/audit

Needs nothing but the broker and the services' verifier keys (GET /v1/keys of
each service, obtained from a channel the auditor trusts). Writes the report as
JSON to --out; exits 1 when a problem is found.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from shared.settings import Settings

cli = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
console = Console()


@cli.command()
def verify(
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers (default: PASSERELLE_KAFKA_BOOTSTRAP_SERVERS)"),
    keys: str = typer.Option("", help="trusted verifier keys, comma separated (default: the development keys)"),
    topic_prefix: str = typer.Option(None, help="topic prefix (default: PASSERELLE_TOPIC_PREFIX)"),
    out: Path = typer.Option(Path("var/audit"), help="where the report goes (report.json)"),
) -> None:
    """Replay every service's topic and the checkpoints from offset 0 and verify them."""
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
        for problem in log["problems"]:
            console.print(f"[red]{name}[/red] {problem['kind']} at {problem['sequence']}: {problem['detail']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    console.print(f"report: {out / 'report.json'}")
    raise typer.Exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    cli()
