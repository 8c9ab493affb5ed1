"""The HTTP edge every service shares (shared/http.py, shared/api.py), on apps over SQLite.

No broker is needed: the apps run as API-only processes ("api" role), so nothing in the
background connects to Kafka; the store and read models are SQLite files in tmp_path.
"""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings
from tests.conftest import bearer

SERVICES = ("intake", "partners", "funding", "followup", "audit")

DOSSIER = {
    "promoter": {"given_name": "Awa", "family_name": "Diop", "birth_date": "1990-01-01",
                 "phone": "+33 6 12 34 56 78", "email": "awa@example.org", "residence_status": "regular"},
    "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique de quartier",
    "description": "", "requested_amount_cents": 500_000, "own_contribution_cents": 100_000, "planned_jobs": 2,
}


def settings_for(service: str, tmp_path) -> Settings:
    return Settings(service=service, data_dir=tmp_path, keys_dir=tmp_path / "keys", role="api",
                    kafka_bootstrap_servers="127.0.0.1:1")


def app_of(service: str, tmp_path):
    module = __import__(f"services.{service}.main", fromlist=["create_app"])
    return module.create_app(settings_for(service, tmp_path))


@pytest.fixture
def intake(tmp_path):
    settings = settings_for("intake", tmp_path)
    from services.intake.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.settings = settings
        client.officer = bearer(settings, "intake_officer", sub="officer-1")
        yield client


def dossier(**changes) -> dict:
    body = copy.deepcopy(DOSSIER)
    body.update(changes)
    return body


# --- idempotency after authorisation -----------------------------------------------

def test_a_stored_answer_is_not_replayed_to_a_caller_without_the_routes_role(intake):
    headers = {"Idempotency-Key": "submit-1"}
    first = intake.post("/v1/projects", json=DOSSIER, headers={**intake.officer, **headers})
    assert first.status_code == 201
    auditor = bearer(intake.settings, "auditor", sub="officer-1")  # the officer's subject, another role
    again = intake.post("/v1/projects", json=DOSSIER, headers={**auditor, **headers})
    assert again.status_code == 403, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.headers["content-type"] == "application/problem+json"


def test_the_replay_is_the_last_dependency_of_every_command_route():
    from shared.http import CommandRoute

    commands = [route for service in SERVICES
                for router in __import__(f"services.{service}.api", fromlist=["routers"]).routers
                for route in router.routes if isinstance(route, CommandRoute)]
    assert len(commands) > 20
    for route in commands:
        calls = [d.call.__name__ for d in route.dependant.dependencies]
        assert calls[-1] == "replay" and calls.count("replay") == 1, (route.path, calls)
        assert calls[0] == "command_context", (route.path, calls)


def test_idempotency_keys_are_scoped_so_that_no_two_callers_meet():
    from shared.auth import Principal
    from shared.http import idempotency_scope

    a = Principal(sub="a:b", roles=frozenset(), issuer="idp")
    b = Principal(sub="a", roles=frozenset(), issuer="idp")
    assert idempotency_scope(a, "POST", "/v1/x", "c") != idempotency_scope(b, "POST", "/v1/x", "b:c")
    other_issuer = Principal(sub="a:b", roles=frozenset(), issuer="other")
    assert idempotency_scope(a, "POST", "/v1/x", "c") != idempotency_scope(other_issuer, "POST", "/v1/x", "c")
    assert idempotency_scope(a, "POST", "/v1/x", "c") != idempotency_scope(a, "POST", "/v1/y", "c")


def test_two_subjects_whose_scoped_keys_met_before_each_get_their_own_answer(intake):
    # Before, the stored key was f"{sub}:{key}": "o:1" with key "k" and "o" with key "1:k" met.
    first = intake.post("/v1/projects", json=DOSSIER,
                        headers={**bearer(intake.settings, "intake_officer", sub="o:1"), "Idempotency-Key": "k"})
    second = intake.post("/v1/projects", json=DOSSIER,
                         headers={**bearer(intake.settings, "intake_officer", sub="o"), "Idempotency-Key": "1:k"})
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]


def test_the_same_caller_and_key_still_replays(intake):
    headers = {**intake.officer, "Idempotency-Key": "submit-2"}
    first = intake.post("/v1/projects", json=DOSSIER, headers=headers)
    again = intake.post("/v1/projects", json=DOSSIER, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
