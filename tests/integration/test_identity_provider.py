"""The development identity provider (deploy/idp/server.js, a real Node.js process) and who trusts it.

The authorisation code flow is walked with plain HTTP (the browser test does it with a browser):
the sign-in form, the console's client exchanging the code with its PKCE verifier, and the access
token checked by the services' own TokenVerifier through the provider's JWKS.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import jwt
import pytest

from console.oidc import OpenIDClient, SignInFailed
from console.settings import ConsoleSettings
from deploy import idp
from shared.auth import TokenVerifier
from shared.settings import Settings
from tests.e2e.conftest import free_port

CONSOLE = "http://127.0.0.1:1"  # never reached: the flow stops at the redirect to the console


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[dict[str, str]]:
    idp.install()
    issuer = f"http://127.0.0.1:{free_port()}"
    partners = tmp_path / idp.PARTNERS_FILE
    partners.write_text(json.dumps({"operator_sn": "0b5f6f0e-5d3c-4c55-9b59-2f8d6a1e7c11"}))
    env = idp.provider_env(issuer, CONSOLE, tmp_path / "keys", partners, access_token_ttl=120)
    log = tmp_path / "idp.log"
    with open(log, "w") as out:
        process = subprocess.Popen(idp.command(), env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{issuer}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield {"issuer": issuer, "secret": env["IDP_CLIENT_SECRET"], "keys_dir": str(tmp_path / "keys")}
    finally:
        process.terminate()
        process.wait(timeout=10)


def sign_in(client: OpenIDClient, login: str, password: str) -> tuple[str | None, str, str, str]:
    """Through the provider's form as a browser would: the code given back to the console (or None)."""
    url, state, nonce, verifier = asyncio.run(client.authorization_url())
    with httpx.Client(timeout=10) as http:
        answer = http.get(url)
        while answer.status_code in (302, 303) and not answer.headers["location"].startswith(CONSOLE):
            answer = http.get(urljoin(str(answer.url), answer.headers["location"]))
        form_action = urlparse(str(answer.url)).path + "/login"
        assert 'name="password"' in answer.text
        answer = http.post(urljoin(str(answer.url), form_action), data={"login": login, "password": password})
        while answer.status_code in (302, 303) and not answer.headers["location"].startswith(CONSOLE):
            answer = http.get(urljoin(str(answer.url), answer.headers["location"]))
        if answer.status_code not in (302, 303):
            return None, answer.text, nonce, verifier
        query = parse_qs(urlparse(answer.headers["location"]).query)
        assert query["state"] == [state]
        return query["code"][0], "", nonce, verifier


def console_client(provider: dict[str, str]) -> OpenIDClient:
    return OpenIDClient(ConsoleSettings(oidc_issuer=provider["issuer"], oidc_client_secret=provider["secret"],
                                        console_url=CONSOLE))


def test_a_partners_account_signs_in_and_its_token_carries_its_roles_and_partner(provider) -> None:
    client = console_client(provider)
    code, _, nonce, verifier = sign_in(client, "operator_sn", "demo")
    assert code
    token = asyncio.run(client.exchange(code, verifier, nonce))
    assert token["claims"]["sub"] == "operator_sn" and token["claims"]["roles"] == ["partner"]
    # The services' verifier, trusting the provider's JWKS only (production), takes the access token.
    verifier_of_services = TokenVerifier(Settings(
        data_dir=Path(provider["keys_dir"]).parent, keys_dir=Path(provider["keys_dir"]),
        jwt_jwks_url=f"{provider['issuer']}/jwks", jwt_jwks_issuer=provider["issuer"], jwt_audience="passerelle"))
    who = verifier_of_services.verify(token["access_token"])
    assert who.sub == "operator_sn" and who.roles == frozenset({"partner"})
    assert who.partner_id == "0b5f6f0e-5d3c-4c55-9b59-2f8d6a1e7c11"
    assert who.partner_scope == "0b5f6f0e-5d3c-4c55-9b59-2f8d6a1e7c11"
    # The ID token is the console's (its audience is the client), not a bearer token for the services.
    with pytest.raises(jwt.InvalidAudienceError):
        verifier_of_services.verify(token["id_token"])


def test_a_wrong_password_is_refused_on_the_form(provider) -> None:
    code, page, _, _ = sign_in(console_client(provider), "intake_officer", "not-demo")
    assert code is None and "Identifiant ou mot de passe incorrect." in page
    code, page, _, _ = sign_in(console_client(provider), "nobody", "demo")
    assert code is None and "Identifiant ou mot de passe incorrect." in page


def test_a_code_is_worth_nothing_without_its_pkce_verifier_or_the_clients_secret(provider) -> None:
    client = console_client(provider)
    code, _, nonce, _ = sign_in(client, "intake_officer", "demo")
    with pytest.raises(SignInFailed):
        asyncio.run(client.exchange(code, "a-verifier-of-someone-else-" + "x" * 30, nonce))
    code, _, nonce, verifier = sign_in(client, "intake_officer", "demo")
    stranger = OpenIDClient(ConsoleSettings(oidc_issuer=provider["issuer"], oidc_client_secret="guessed",
                                            console_url=CONSOLE))
    with pytest.raises(SignInFailed):
        asyncio.run(stranger.exchange(code, verifier, nonce))
    # The right verifier, but another sign-in's nonce: refused too.
    code, _, _, verifier = sign_in(client, "intake_officer", "demo")
    with pytest.raises(SignInFailed):
        asyncio.run(client.exchange(code, verifier, "another-nonce"))
