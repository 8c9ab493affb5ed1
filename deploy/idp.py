"""The development identity provider (deploy/idp/server.js) and what trusts it: its environment, the
console's, and the services'. Used by `make run` (deploy/run.py) and the browser tests.

Its npm packages are installed with `npm ci` from the lock file when missing (deploy/idp/node_modules,
outside git). Its signing key and the console's client secret are made at first use beside the other
development keys (shared/keys.py), never in the repository.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from shared.keys import create_private_file, ensure_keys_dir

IDP_DIR = Path(__file__).resolve().parent / "idp"
CLIENT_ID = "passerelle-console"
PARTNERS_FILE = "demo-partners.json"  # {account: partner id}, written by deploy/seed.py


def installed() -> bool:
    return (IDP_DIR / "node_modules" / "oidc-provider" / "package.json").exists()


def install() -> None:
    """`npm ci` (the exact versions of package-lock.json) when the packages are missing."""
    if installed():
        return
    if shutil.which("npm") is None:
        raise RuntimeError("the identity provider needs Node.js 20+ and npm (apt-get install nodejs npm)")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=IDP_DIR, check=True)


def command() -> list[str]:
    return ["node", str(IDP_DIR / "server.js")]


def client_secret(keys_dir: Path) -> str:
    """The console's client secret at the provider, made once."""
    path = ensure_keys_dir(keys_dir) / "console-oidc-client.secret"
    create_private_file(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


def provider_env(issuer: str, console_url: str, keys_dir: Path, partners_file: Path,
                 audience: str = "passerelle", access_token_ttl: int = 3600) -> dict[str, str]:
    return {
        "IDP_ISSUER": issuer,
        "IDP_KEY_FILE": str(ensure_keys_dir(keys_dir) / "idp-signing.jwk.json"),
        "IDP_CLIENT_ID": CLIENT_ID,
        "IDP_CLIENT_SECRET": client_secret(keys_dir),
        "IDP_REDIRECT_URIS": f"{console_url}/auth/callback",
        "IDP_POST_LOGOUT_REDIRECT_URIS": f"{console_url}/signed-out",
        "IDP_AUDIENCE": audience,
        "IDP_PARTNERS_FILE": str(partners_file),
        "IDP_ACCESS_TOKEN_TTL": str(access_token_ttl),
    }


def console_env(issuer: str, console_url: str, keys_dir: Path) -> dict[str, str]:
    port = console_url.rsplit(":", 1)[-1].rstrip("/")
    return {
        "PASSERELLE_OIDC_ISSUER": issuer,
        "PASSERELLE_OIDC_CLIENT_ID": CLIENT_ID,
        "PASSERELLE_OIDC_CLIENT_SECRET": client_secret(keys_dir),
        "PASSERELLE_CONSOLE_URL": console_url,
        "PASSERELLE_CONSOLE_PORT": port,
    }


def services_trust_env(issuer: str, keys_dir: Path) -> dict[str, str]:
    """In development the services trust the provider's keys and the development key of `make token`."""
    return {
        "PASSERELLE_JWT_JWKS_URL": f"{issuer}/jwks",
        "PASSERELLE_JWT_JWKS_ISSUER": issuer,
        "PASSERELLE_JWT_PUBLIC_KEY_PATH": str(keys_dir / "jwt-dev.pub.pem"),
    }
