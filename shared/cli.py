"""The `passerelle` command line (Typer): keys, tokens, topics, parked records, projections.

    passerelle keys                      (python -m shared.cli keys; `make run` and `make test` run it)
    passerelle token --role intake_officer [--sub alice] [--partner <id>]
    passerelle topics
    passerelle parked retry --service partners
    passerelle rebuild --service intake dossiers_v1
"""

from __future__ import annotations

import asyncio
import sys

import httpx
import typer
from rich.console import Console

from shared.auth import Role, issue_token
from shared.settings import Settings, service_url

app = typer.Typer(help="Passerelle: keys, tokens, topics, parked records, projections.", no_args_is_help=True)
parked = typer.Typer(help="Records the consumers could not process.")
app.add_typer(parked, name="parked")
console = Console()


def _admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(Settings(), Role.admin, sub='cli-admin')}"}


@app.command()
def keys() -> None:
    """Make the missing development keys (outside the repository) and print where they are.

    The directory is PASSERELLE_KEYS_DIR, else $XDG_DATA_HOME/passerelle/keys, else
    ~/.local/share/passerelle/keys. Private keys are 0600, the directory 0700; each service's
    `<service>.verifier` is its public verifier key (GET /v1/keys' verifier_key), what the audit reads.
    """
    from shared.keys import make_dev_keys, move_old_keys

    settings = Settings()
    # Before any key is made: the keys an older checkout kept under var/keys still open its data.
    moved, left = move_old_keys(settings)
    for path in moved:
        print(f"moved from {settings.data_dir / 'keys'}: {path}")
    for path in left:
        print(f"WARNING: {path} is not used: {settings.keys_dir / path.name} is", file=sys.stderr)
    made = make_dev_keys(settings)
    print(f"keys directory: {settings.keys_dir}")
    width = max(len(what) for what, _ in made)
    for what, path in made:
        print(f"  {what.ljust(width)}  {path}")


@app.command()
def token(role: Role = typer.Option(..., help="the role the token grants"),
          sub: str = typer.Option(None, help="user id (default: a new one)"),
          partner: str = typer.Option(None, help="partner id, for the partner role"),
          hours: int = typer.Option(8, help="validity")) -> None:
    """Print a bearer token signed with the local development key."""
    if role is Role.partner and not partner:
        raise typer.BadParameter("the partner role needs --partner <partner id>")
    print(issue_token(Settings(), role, sub=sub, partner_id=partner, ttl_seconds=hours * 3600))


@app.command()
def topics() -> None:
    """Create the missing Kafka topics, set their retention."""
    from shared.topics import create_topics

    created = asyncio.run(create_topics(Settings()))
    console.print(f"topics ready ({', '.join(created) or 'none created'})")


@parked.command("list")
def parked_list(service: str = typer.Option(..., help="intake, partners, ...")) -> None:
    """List a service's parked records."""
    response = httpx.get(f"{service_url(service)}/v1/admin/parked", headers=_admin_headers(), timeout=30)
    response.raise_for_status()
    for record in response.json():
        console.print(record)


@parked.command("retry")
def parked_retry(service: str = typer.Option(..., help="intake, partners, ...")) -> None:
    """Process a service's parked records again, in order."""
    response = httpx.post(f"{service_url(service)}/v1/admin/parked/retry", headers=_admin_headers(), timeout=300)
    response.raise_for_status()
    console.print(response.json())


@app.command()
def rebuild(projection: str, service: str = typer.Option(..., help="intake, partners, ...")) -> None:
    """Drop a read model of a running service and rebuild it from its log."""
    response = httpx.post(f"{service_url(service)}/v1/admin/projections/{projection}/rebuild",
                          headers=_admin_headers(), timeout=600)
    response.raise_for_status()
    console.print(response.json())


if __name__ == "__main__":
    app()
