"""`make run` (deploy/run.py) starts the identity provider and the console beside the services."""

from __future__ import annotations

import shutil
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
    monkeypatch.setenv("PASSERELLE_RUN_SERVICES",
                       '[{"name": "intake", "module": "services.intake.main", "port": 8001}]')
    supervisor = run.Supervisor()
    supervisor.prepare_console()
    assert [s.name for s in supervisor.services] == ["intake"]
    assert "PASSERELLE_JWT_JWKS_URL" not in supervisor.base_env


def test_the_provider_and_the_console_start_as_make_run_starts_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py's own start-up of the two (on free ports here): both healthy, the console sends to the provider."""
    import httpx

    from tests.e2e.conftest import free_port

    console_port, idp_port = free_port(), free_port()
    monkeypatch.setattr(run, "CONSOLE_PORT", console_port)
    monkeypatch.setattr(run, "CONSOLE_URL", f"http://127.0.0.1:{console_port}")
    monkeypatch.setattr(run, "IDP_PORT", idp_port)
    monkeypatch.setattr(run, "IDP_URL", f"http://127.0.0.1:{idp_port}")
    monkeypatch.setattr(run, "LOG_DIR", run.VAR / "log" / f"test-run-{console_port}")  # var/: printed relative
    monkeypatch.setenv("PASSERELLE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("PASSERELLE_RUN_SERVICES", raising=False)
    supervisor = run.Supervisor()
    supervisor.services = [s for s in supervisor.services if s.name in ("idp", "console")]
    supervisor.prepare_console()
    by_name = {s.name: s for s in supervisor.services}
    by_name["idp"].env["IDP_PARTNERS_FILE"] = str(tmp_path / "demo-partners.json")
    try:
        supervisor.start_services()
        supervisor.wait_healthy()
        answer = httpx.get(f"http://127.0.0.1:{console_port}/", follow_redirects=True)
        assert answer.status_code == 200 and str(answer.url).startswith(f"http://127.0.0.1:{idp_port}/interaction/")
        assert 'name="password"' in answer.text
    finally:
        supervisor.stop_services()
        shutil.rmtree(run.LOG_DIR, ignore_errors=True)
