"""The console's settings, from the environment (defaults: `make run` on this machine)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import service_url


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSERELLE_", extra="ignore")

    # Where people reach the console (its callback and sign-out addresses are made from it).
    console_url: str = "http://127.0.0.1:8000"
    console_host: str = "127.0.0.1"
    console_port: int = 8000
    # The OpenID Connect provider and the console's client there (a confidential client).
    oidc_issuer: str = "http://127.0.0.1:8010"
    oidc_client_id: str = "passerelle-console"
    oidc_client_secret: str = ""
    # A signed-in session ends this long after its last request, or when its access token expires.
    session_idle_seconds: int = 30 * 60
    # Answers slower than this from a service are given up (seconds).
    api_timeout: float = 10.0
    # Empty: the services' addresses of shared.settings.service_url (PASSERELLE_<SERVICE>_URL).
    intake_url: str = ""
    partners_url: str = ""
    funding_url: str = ""
    followup_url: str = ""
    audit_url: str = ""

    def url_of(self, service: str) -> str:
        return getattr(self, f"{service}_url", "") or service_url(service)

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere but on the developer's own machine over plain HTTP."""
        return not self.console_url.startswith(("http://127.0.0.1", "http://localhost"))
