"""`make run` (deploy/run.py) starts the identity provider and the console beside the services."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import run


def test_make_run_starts_the_provider_and_the_console_and_the_services_trust_both_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSERELLE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("PASSERELLE_RUN_SERVICES", raising=False)
    supervisor = run.Supervisor()
    supervisor.prepare_console()
    by_name = {s.name: s for s in supervisor.services}
    assert [s.name for s in supervisor.services][::len(by_name) - 1] == ["idp", "console"]
    assert by_name["console"].port == 8000 and by_name["console"].module == "console.app"
    assert by_name["idp"].argv[0] == "node" and by_name["idp"].env["IDP_ISSUER"] == "http://127.0.0.1:8010"
    assert by_name["idp"].env["IDP_REDIRECT_URIS"] == "http://127.0.0.1:8000/auth/callback"
    # One client secret, known to both ends, kept outside the repository.
    assert by_name["idp"].env["IDP_CLIENT_SECRET"] == by_name["console"].env["PASSERELLE_OIDC_CLIENT_SECRET"]
    assert Path(by_name["idp"].env["IDP_KEY_FILE"]).parent == tmp_path / "keys"
    # The services: the provider's keys and the development key of `make token`.
    assert supervisor.base_env["PASSERELLE_JWT_JWKS_URL"] == "http://127.0.0.1:8010/jwks"
    assert supervisor.base_env["PASSERELLE_JWT_JWKS_ISSUER"] == "http://127.0.0.1:8010"
    assert supervisor.base_env["PASSERELLE_JWT_PUBLIC_KEY_PATH"] == str(tmp_path / "keys" / "jwt-dev.pub.pem")


def test_a_chosen_set_of_services_runs_without_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSERELLE_RUN_SERVICES", '[{"name": "intake", "module": "services.intake.main", "port": 8001}]')
    supervisor = run.Supervisor()
    supervisor.prepare_console()
    assert [s.name for s in supervisor.services] == ["intake"]
    assert "PASSERELLE_JWT_JWKS_URL" not in supervisor.base_env
