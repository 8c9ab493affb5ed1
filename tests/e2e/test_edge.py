"""The HTTP edge of a real service process: no query string in its logs or spans."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.conftest import bearer

pytestmark = pytest.mark.e2e


def test_no_log_line_nor_span_holds_a_query_string(start_service, tmp_path):
    intake = start_service("intake", role="api")
    intake.wait_ready()
    marker = uuid.uuid4().hex
    admin = bearer(intake.settings, "admin")
    listed = httpx.get(f"{intake.url}/v1/projects", params={"partner_id": f"partner-{marker}"}, headers=admin)
    assert listed.status_code == 200, listed.text
    forgotten = httpx.delete(f"{intake.url}/v1/persons/{uuid.uuid4()}", headers=admin,
                             params={"reason": f"Aminata Sow {marker} asked"})
    assert forgotten.status_code == 422, forgotten.text  # the reason goes in the body: refused, and not logged
    time.sleep(1.0)  # the spans and the access log lines are written by then
    written = "\n".join(p.read_text(errors="replace") for p in tmp_path.iterdir() if p.suffix in (".log", ".jsonl"))
    assert "/v1/persons/" in written and "GET /v1/projects" in written, "the requests are logged, by path"
    assert marker not in written
