"""Signing in with OpenID Connect: authorisation code with PKCE (S256), the console a confidential client.

Authlib makes the authorisation request and exchanges the code (client_secret_basic); the ID token
is checked here against the provider's published keys (issuer, audience, expiry, nonce).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from starlette.concurrency import run_in_threadpool

from console.settings import ConsoleSettings

SCOPE = "openid profile passerelle"


class SignInFailed(Exception):
    """The provider's answer cannot be trusted or used; the person starts again."""


class OpenIDClient:
    def __init__(self, settings: ConsoleSettings):
        self.settings = settings
        self.redirect_uri = settings.console_url.rstrip("/") + "/auth/callback"
        self.post_logout_redirect_uri = settings.console_url.rstrip("/") + "/signed-out"
        self._metadata: dict[str, Any] | None = None
        self._keys: jwt.PyJWKClient | None = None
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, read once (the provider may start after the console)."""
        async with self._lock:
            if self._metadata is None:
                url = self.settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
                async with httpx.AsyncClient(timeout=5) as http:
                    answer = await http.get(url)
                    answer.raise_for_status()
                    found = answer.json()
                if found.get("issuer") != self.settings.oidc_issuer:
                    raise SignInFailed(f"the provider calls itself {found.get('issuer')!r}")
                self._metadata = found
                self._keys = jwt.PyJWKClient(found["jwks_uri"], lifespan=300, timeout=5)
            return self._metadata

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id, client_secret=self.settings.oidc_client_secret,
            scope=SCOPE, redirect_uri=self.redirect_uri, code_challenge_method="S256", timeout=10,
        )

    async def authorization_url(self, lang: str = "fr") -> tuple[str, str, str, str]:
        """Where to send the browser, with the state, nonce and code verifier to keep for the callback.

        `lang` asks the provider for its pages in the console's language (ui_locales)."""
        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._client() as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce,
                                                     code_verifier=verifier, ui_locales=lang)
        return url, state, nonce, verifier

    async def exchange(self, code: str, verifier: str, nonce: str) -> dict[str, Any]:
        """The tokens for an authorisation code, with the ID token's checked claims under "claims"."""
        meta = await self.metadata()
        async with self._client() as client:
            try:
                token = await client.fetch_token(meta["token_endpoint"], code=code, code_verifier=verifier,
                                                 grant_type="authorization_code")
            except Exception as exc:  # Authlib raises OAuthError, httpx its own: the person starts again
                raise SignInFailed(f"the code could not be exchanged: {exc}") from exc
        if "id_token" not in token or "access_token" not in token:
            raise SignInFailed("the provider gave no ID token or access token")
        claims = await run_in_threadpool(self._check_id_token, token["id_token"])
        if claims.get("nonce") != nonce:
            raise SignInFailed("the ID token's nonce is not this sign-in's")
        return {**token, "claims": claims}

    def _check_id_token(self, id_token: str) -> dict[str, Any]:
        assert self._keys is not None
        try:
            key = self._keys.get_signing_key_from_jwt(id_token).key
            return jwt.decode(id_token, key, algorithms=["RS256"], audience=self.settings.oidc_client_id,
                              issuer=self.settings.oidc_issuer, options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise SignInFailed(f"the ID token is not valid: {exc}") from exc

    async def end_session_url(self, id_token: str | None, lang: str = "fr") -> str:
        """The provider's sign-out (RP-initiated logout), coming back to the console's signed-out page."""
        meta = await self.metadata()
        params = {"client_id": self.settings.oidc_client_id, "post_logout_redirect_uri": self.post_logout_redirect_uri,
                  "ui_locales": lang}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{meta['end_session_endpoint']}?{urlencode(params)}"
