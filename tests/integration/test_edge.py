"""The HTTP edge on PostgreSQL, which refuses a NUL in text: such input is 422 at the edge, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.funding.main import create_app as create_funding
from services.intake.main import create_app as create_intake
from tests.conftest import bearer
from tests.unit.test_edge import DOSSIER

pytestmark = pytest.mark.integration


@pytest.fixture
def funding(make_settings):
    settings = make_settings("funding", role="api")
    with TestClient(create_funding(settings), raise_server_exceptions=False) as client:
        client.settings = settings
        yield client


@pytest.mark.parametrize("path", ["/v1/rules/2026%001", "/v1/decisions?decided_by=alice%00", "/v1/decisions?kind=%00"])
def test_a_nul_in_a_path_or_query_never_reaches_postgresql(funding, path):
    r = funding.get(path, headers=bearer(funding.settings, "funding_officer"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_a_nul_in_a_body_is_refused_before_anything_is_saved(make_settings):
    settings = make_settings("intake", role="api")
    with TestClient(create_intake(settings), raise_server_exceptions=False) as client:
        store = client.app.state.runtime.app.recorder
        before = store.max_notification_id()
        r = client.post("/v1/projects", json={**DOSSIER, "title": "Boutique\x00"},
                        headers=bearer(settings, "intake_officer"))
        assert r.status_code == 422, r.text
        assert store.max_notification_id() == before
