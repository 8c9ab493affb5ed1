"""A body that cannot even be decoded is bad input, as malformed JSON is: 422, not FastAPI's bare 400
(which no route documents)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings


@pytest.mark.parametrize("body", [b"\xff", b"{\"title\": \"\xe9\"}", b"\xf0\x91"])
@pytest.mark.parametrize("service, path", [("intake", "/v1/projects"), ("funding", "/v1/envelopes")])
def test_a_body_that_is_not_utf8_is_refused_as_invalid(service, path, body, tmp_path):
    module = __import__(f"services.{service}.main", fromlist=["create_app"])
    app = module.create_app(Settings(service=service, data_dir=tmp_path, keys_dir=tmp_path / "keys",
                                     kafka_bootstrap_servers="127.0.0.1:1"))
    answer = TestClient(app).post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["loc"] == ["body"]
