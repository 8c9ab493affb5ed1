"""Tokens of an identity provider, checked against its JWKS served over real HTTP (docs/security.md).

The provider here is a local HTTP server whose key set the test changes: a key rotation
is taken without a restart, a token signed by a key the provider never published is
refused, and a provider that cannot be reached is a 503, not a 401 (the token may be good).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shared import problems
from shared.auth import Principal, Role, TokenVerifier, ensure_dev_keys, issue_token, requires
from shared.settings import Settings

ISSUER, AUDIENCE = "https://id.example.org", "passerelle"


class Provider:
    """An identity provider: RSA keys by kid, the published ones served as a JWKS."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                provider.fetches += 1
                body = json.dumps({"keys": [provider.jwk(kid) for kid in provider.published]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def new_key(self, kid: str, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)

    def jwk(self, kid: str) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, *, roles: list[str], signed_by: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": "officer-1", "roles": roles, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
                **claims}
        return jwt.encode(body, self.keys[signed_by or kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.server.shutdown()
    p.server.server_close()


def api_of(settings: Settings) -> TestClient:
    api = FastAPI()
    problems.install(api)
    api.state.verifier = TokenVerifier(settings)

    @api.get("/whoami")
    async def whoami(who: Annotated[Principal, Depends(requires(Role.auditor))]) -> dict[str, Any]:
        return {"sub": who.sub, "roles": sorted(who.roles)}

    return TestClient(api)


def settings_for(url: str, tmp_path: Any) -> Settings:
    return Settings(service="intake", data_dir=tmp_path, keys_dir=tmp_path / "keys", jwt_jwks_url=url,
                    jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_cooldown=0.0)


def call(client: TestClient, token: str) -> Any:
    return client.get("/whoami", headers={"Authorization": f"Bearer {token}"})


def test_a_token_of_the_provider_is_checked_with_the_key_its_kid_names(provider: Provider, tmp_path: Any) -> None:
    provider.new_key("2026-a")
    client = api_of(settings_for(provider.url, tmp_path))
    answer = call(client, provider.token("2026-a", roles=["auditor"]))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sub": "officer-1", "roles": ["auditor"]}
    # The role is still checked: a good token of the wrong role is a 403.
    assert call(client, provider.token("2026-a", roles=["partner"])).status_code == 403
    # No development key pair was made: the provider's keys are the only ones.
    assert not (tmp_path / "keys" / "jwt-dev.pem").exists()


def test_a_rotated_key_is_taken_without_a_restart(provider: Provider, tmp_path: Any) -> None:
    provider.new_key("2026-a")
    client = api_of(settings_for(provider.url, tmp_path))
    assert call(client, provider.token("2026-a", roles=["auditor"])).status_code == 200
    provider.new_key("2026-b")  # the provider rotates: tokens now name the new kid
    answer = call(client, provider.token("2026-b", roles=["auditor"]))
    assert answer.status_code == 200, answer.text
    assert provider.fetches == 2  # the set was fetched again for the unknown kid, once


def test_a_token_the_provider_never_signed_is_refused(provider: Provider, tmp_path: Any) -> None:
    provider.new_key("2026-a")
    provider.new_key("stolen", publish=False)
    client = api_of(settings_for(provider.url, tmp_path))
    for token in (
        provider.token("stolen", roles=["auditor"]),  # a kid the provider does not have
        provider.token("2026-a", roles=["auditor"], signed_by="stolen"),  # a published kid, another key
        provider.token("2026-a", roles=["auditor"], iss="https://elsewhere.example.org"),
        jwt.encode({"sub": "x", "roles": ["auditor"]}, "s" * 32, algorithm="HS256", headers={"kid": "2026-a"}),
    ):
        answer = call(client, token)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_a_provider_out_of_reach_is_a_503(provider: Provider, tmp_path: Any) -> None:
    provider.new_key("2026-a")
    token = provider.token("2026-a", roles=["auditor"])
    provider.server.shutdown()
    provider.server.server_close()
    answer = call(api_of(settings_for(provider.url, tmp_path)), token)
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "identity provider" in answer.json()["detail"]


def test_in_development_both_the_provider_and_the_development_key_are_trusted(provider: Provider,
                                                                                tmp_path: Any) -> None:
    """`make run`: the console's tokens come from the provider, `make token`'s from the development key."""
    provider.new_key("2026-a")
    dev = Settings(service="intake", data_dir=tmp_path, keys_dir=tmp_path / "keys", jwt_issuer="passerelle-dev")
    _, public = ensure_dev_keys(dev)
    both = api_of(dev.model_copy(update={"jwt_jwks_url": provider.url, "jwt_jwks_issuer": ISSUER,
                                         "jwt_public_key_path": public, "jwt_jwks_cooldown": 0.0}))
    assert call(both, provider.token("2026-a", roles=["auditor"])).status_code == 200
    assert call(both, issue_token(dev, "auditor", sub="someone")).status_code == 200
    # Each source with its own issuer: the provider's key does not vouch for the development issuer,
    # nor the development key for the provider's, nor with a kid.
    assert call(both, provider.token("2026-a", roles=["auditor"], iss="passerelle-dev")).status_code == 401
    private = (tmp_path / "keys" / "jwt-dev.pem").read_bytes()
    now = int(time.time())
    claims = {"sub": "x", "roles": ["auditor"], "aud": AUDIENCE, "iat": now, "exp": now + 600}
    assert call(both, jwt.encode({**claims, "iss": ISSUER}, private, algorithm="RS256")).status_code == 401
    assert call(both, jwt.encode({**claims, "iss": "passerelle-dev"}, private, algorithm="RS256",
                                 headers={"kid": "2026-a"})).status_code == 401
    # Production: only what is configured, the provider's set; the development key is not trusted.
    only_provider = api_of(settings_for(provider.url, tmp_path).model_copy(update={"jwt_issuer": "passerelle-dev",
                                                                                  "jwt_jwks_issuer": ISSUER}))
    assert call(only_provider, provider.token("2026-a", roles=["auditor"])).status_code == 200
    assert call(only_provider, issue_token(dev, "auditor", sub="someone")).status_code == 401
