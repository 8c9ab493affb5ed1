"""The HTTP edge every service shares (shared/http.py, shared/api.py), on apps over SQLite.

No broker is needed: the apps run as API-only processes ("api" role), so nothing in the
background connects to Kafka; the store and read models are SQLite files in tmp_path.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Annotated

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from shared.auth import Principal, Role, requires
from shared.domain import NotFound
from shared.http import command_router
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
                for route in router.routes if isinstance(route, CommandRoute) and "POST" in route.methods]
    assert len(commands) > 20
    for route in commands:
        calls = [d.call.__name__ for d in route.dependant.dependencies]
        assert calls[-1] == "replay" and calls.count("replay") == 1, (route.path, calls)
        assert calls[0] == "command_context", (route.path, calls)


async def own_dossier(who: Annotated[Principal, Depends(requires(Role.partner))]) -> None:
    """A partner-scope check as a dependency: another partner's dossier is 404."""
    if who.partner_scope != "operator-1":
        raise NotFound("dossier", "d-1")


scoped_router = command_router(prefix="/v1")
reports_written: list[str] = []


@scoped_router.post("/dossiers/d-1/report", status_code=201)
def report(_: Annotated[None, Depends(own_dossier)]) -> dict[str, str]:
    reports_written.append("d-1")
    return {"report": "written"}


def test_a_partner_scope_dependency_runs_before_the_replay(tmp_path):
    """A route's own dependencies (here a partner-scope check, 404 to a stranger) all run before the
    stored answer is looked up: a stranger holding the key and the subject gets no replay."""
    from services.intake.main import build
    from shared.http import create_api, idempotency_scope

    settings = settings_for("intake", tmp_path)
    app = create_api(build(settings), [scoped_router], title="t", description="d")
    with TestClient(app, raise_server_exceptions=False) as client:
        state = client.app.state.runtime.app
        mine = bearer(settings, "partner", sub="p-1", partner_id="operator-1")
        stranger = bearer(settings, "partner", sub="p-1", partner_id="operator-2")
        # The answer stored for operator-1's key, as a command's save records it (with the subject
        # both tokens share: the partner id is no part of the key).
        who = Principal(sub="p-1", roles=frozenset({"partner"}), partner_id="operator-1",
                        issuer=settings.jwt_issuer)
        scoped = idempotency_scope(who, "POST", "/v1/dossiers/d-1/report", "k-1")
        fingerprint = hashlib.sha256(b"POST /v1/dossiers/d-1/report\n").hexdigest()
        recorder, p = state.recorder, state.recorder.ph
        recorder._run(f"INSERT INTO {recorder.idempotency_table} (key, fingerprint, response) VALUES ({p}, {p}, {p})",
                      (scoped, fingerprint, json.dumps({"status": 201, "body": {"report": "written"}})))
        r = client.post("/v1/dossiers/d-1/report", headers={**stranger, "Idempotency-Key": "k-1"})
        assert r.status_code == 404, r.text
        assert "idempotent-replayed" not in r.headers
        r = client.post("/v1/dossiers/d-1/report", headers={**mine, "Idempotency-Key": "k-1"})
        assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true"
        assert not reports_written


def test_idempotency_keys_are_scoped_so_that_no_two_callers_meet():
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


def test_the_idempotency_key_is_declared_and_bounded(intake):
    operation = intake.get("/openapi.json").json()["paths"]["/v1/projects"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and header["schema"]["anyOf"][0]["maxLength"] == 200
    r = intake.post("/v1/projects", json=DOSSIER, headers={**intake.officer, "Idempotency-Key": "k" * 201})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


def test_the_same_caller_and_key_still_replays(intake):
    headers = {**intake.officer, "Idempotency-Key": "submit-2"}
    first = intake.post("/v1/projects", json=DOSSIER, headers=headers)
    again = intake.post("/v1/projects", json=DOSSIER, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


# --- never a 5xx from input --------------------------------------------------------

@pytest.mark.parametrize("where", ["title", "description", "promoter.given_name"])
@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x85", "\ud800"])
def test_a_control_character_in_a_body_string_is_refused(intake, where, character):
    body = dossier()
    target, field = (body["promoter"], "given_name") if where.startswith("promoter.") else (body, where)
    target[field] = f"Bou{character}tique"
    before = intake.app.state.runtime.app.recorder.max_notification_id()
    r = intake.post("/v1/projects", content=json.dumps(body),  # ASCII JSON: "\\ud800", as a client may send it
                    headers={**intake.officer, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert intake.app.state.runtime.app.recorder.max_notification_id() == before


def test_a_control_character_in_a_list_of_strings_is_refused(intake):
    created = intake.post("/v1/projects", json=DOSSIER, headers=intake.officer).json()
    r = intake.post(f"/v1/projects/{created['id']}/consent", json={"purposes": ["x\x00"]}, headers=intake.officer)
    assert r.status_code == 422, r.text


def test_tab_and_line_breaks_are_kept_in_free_text(intake):
    r = intake.post("/v1/projects", json=dossier(description="Première ligne\r\nseconde\tligne"),
                    headers=intake.officer)
    assert r.status_code == 201, r.text


def test_the_services_share_one_strict_base():
    from shared.api import Strict

    for service in ("intake", "partners", "funding", "followup"):
        module = __import__(f"services.{service}.api", fromlist=["Strict"])
        assert module.Strict is Strict


@pytest.mark.parametrize("query", ["status=%00", "country=S%00", "cursor=a%01b", "partner_id=%C0%AF", "status=a%0Ab"])
def test_a_control_character_in_a_query_string_is_refused(intake, query):
    r = intake.get(f"/v1/projects?{query}", headers=intake.officer)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_a_control_character_in_a_path_is_refused(tmp_path):
    settings = settings_for("partners", tmp_path)
    with TestClient(app_of("partners", tmp_path), raise_server_exceptions=False) as client:
        r = client.get("/v1/partners/ab%00cd", headers=bearer(settings, "admin"))
        assert r.status_code == 422, r.text


@pytest.mark.parametrize("given", ["", "x" * 201, "caf\u00e9", "a b"])
def test_an_x_request_id_out_of_bounds_is_replaced_by_a_new_one(given):
    from starlette.requests import Request

    from shared.http import request_id

    scope = {"type": "http", "headers": [(b"x-request-id", given.encode("latin-1"))]}
    made = request_id(Request(scope))
    assert made != given and len(made) == 36
    assert request_id(Request({"type": "http", "headers": [(b"x-request-id", b"req-42")]})) == "req-42"


AS_OF_ROUTES = (("funding", "/v1/decisions", "funding_officer"), ("followup", "/v1/indicators", "followup_officer"),
                ("audit", "/v1/ledger?compare=false", "auditor"))


@pytest.mark.parametrize("service,path,role", AS_OF_ROUTES)
@pytest.mark.parametrize("as_of", ["0.5", "1700000000", "2026-03-01", "2026-03-01T12:00:00",
                                   "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z"])
def test_a_date_time_parameter_is_rfc3339_with_its_zone_or_422(tmp_path, service, path, role, as_of):
    settings = settings_for(service, tmp_path)
    with TestClient(app_of(service, tmp_path), raise_server_exceptions=False) as client:
        r = client.get(path, params={"as_of": as_of}, headers=bearer(settings, role))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("service,path,role", AS_OF_ROUTES)
def test_an_rfc3339_date_time_parameter_is_taken(tmp_path, service, path, role):
    settings = settings_for(service, tmp_path)
    with TestClient(app_of(service, tmp_path), raise_server_exceptions=False) as client:
        for as_of in ("2026-03-01T12:00:00Z", "2026-03-01T12:00:00.123456+02:00"):
            r = client.get(path, params={"as_of": as_of}, headers=bearer(settings, role))
            assert r.status_code == 200, r.text


@pytest.mark.parametrize("idempotency_key", [None, "big-1"])
def test_a_chunked_body_over_the_limit_is_413(intake, idempotency_key):
    def chunks():
        for _ in range(100):
            yield b"x" * 4096

    headers = {**intake.officer, "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    r = intake.post("/v1/projects", content=chunks(), headers=headers)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_an_unexpected_error_is_a_500_problem(intake):
    app = intake.app.state.runtime.app

    def broken(*args, **kwargs):
        raise RuntimeError("the store broke")

    app.submit_project = broken
    r = intake.post("/v1/projects", json=DOSSIER, headers=intake.officer)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/internal-error") and "the store broke" not in r.text


# --- no query string in a log line -----------------------------------------------

def test_the_access_log_and_httpx_lines_hold_no_query_string():
    import logging

    import httpx

    from shared.telemetry import WithoutQueryStrings

    access = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "DELETE", "/v1/persons/42?reason=Awa+Diop+asked", "1.1", 204), None)
    assert WithoutQueryStrings().filter(access)
    assert access.getMessage() == '127.0.0.1:5000 - "DELETE /v1/persons/42 HTTP/1.1" 204'
    client = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s %d %s"',
                               ("GET", httpx.URL("http://funding/v1/decisions?decided_by=awa"), "HTTP/1.1", 200, "OK"),
                               None)
    WithoutQueryStrings().filter(client)
    assert "awa" not in client.getMessage() and "/v1/decisions" in client.getMessage()


def test_the_uvicorn_access_log_is_filtered_once_telemetry_is_set_up():
    import inspect
    import logging

    from shared import telemetry

    assert "hide_query_strings()" in inspect.getsource(telemetry.setup)
    telemetry.hide_query_strings()  # what setup does, without taking over the process's logging
    for name in telemetry.QUERY_LOGGERS:
        assert any(isinstance(f, telemetry.WithoutQueryStrings) for f in logging.getLogger(name).filters)


def test_the_http_span_keeps_the_path_not_the_query_string():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.telemetry import without_query_in_span

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    span = provider.get_tracer("test").start_span("GET /v1/persons", attributes={
        "http.url": "http://intake/v1/persons/42?reason=Awa", "url.full": "http://intake/v1/persons/42?reason=Awa",
        "url.query": "reason=Awa", "http.target": "/v1/persons/42"})
    without_query_in_span(span, {})
    span.end()
    attributes = dict(exported.get_finished_spans()[0].attributes)
    assert "Awa" not in json.dumps(attributes)
    assert attributes["http.url"] == "http://intake/v1/persons/42"


# --- the contract tells the truth --------------------------------------------------

@pytest.mark.parametrize("service", SERVICES)
def test_every_route_declares_its_problem_answers(tmp_path, service):
    from shared.http import CommandRoute

    app = app_of(service, tmp_path)
    document = TestClient(app).get("/openapi.json").json()
    assert set(document["components"]["schemas"]["Problem"]["properties"]) == {
        "type", "title", "status", "detail", "rule", "errors"}
    assert "HTTPValidationError" not in json.dumps(document)
    commands = {(route.path, method) for router in __import__(f"services.{service}.api", fromlist=["routers"]).routers
                for route in router.routes if isinstance(route, CommandRoute) for method in route.methods}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = {int(status) for status in operation["responses"]}
            expected = {422, 500}
            if operation.get("security") or path.startswith("/v1/") and path != "/v1/keys":
                expected |= {401, 403, 503}
            if "{" in path:
                expected.add(404)
            if (path, method.upper()) in commands:
                expected |= {404, 409, 413, 503}
            assert expected <= declared, (method, path, sorted(expected - declared))
            for status in expected - {503} if path == "/readyz" else expected:
                content = operation["responses"][str(status)]["content"]
                assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def test_the_problem_answers_follow_what_a_route_depends_on(intake):
    document = intake.get("/openapi.json").json()
    assert set(document["paths"]["/healthz"]["get"]["responses"]) == {"200", "422", "500"}
    assert "404" not in document["paths"]["/v1/projects"]["get"]["responses"]
    assert "409" not in document["paths"]["/v1/projects/{project_id}"]["get"]["responses"]
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]


def test_a_store_out_of_reach_is_a_503_problem(intake):
    from eventsourcing.persistence import OperationalError

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    intake.app.state.runtime.app.submit_project = unreachable
    r = intake.post("/v1/projects", json=DOSSIER, headers=intake.officer)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"] == "5"


# --- every date-time with its zone ---------------------------------------------------

def _has_zone(moment: str) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(moment).utcoffset() is not None


def test_the_dossiers_list_gives_its_times_with_their_zone(intake):
    for _ in range(3):
        intake.post("/v1/projects", json=DOSSIER, headers=intake.officer)
    intake.app.state.runtime.projector.catch_up()
    page = intake.get("/v1/projects", params={"limit": 2}, headers=intake.officer).json()
    assert page["items"] and all(_has_zone(item["submitted_at"]) for item in page["items"])
    rest = intake.get("/v1/projects", params={"cursor": page["next_cursor"]}, headers=intake.officer).json()
    assert len(rest["items"]) == 1  # the cursor, now with a zone, still pages on SQLite


def test_the_partners_list_gives_its_times_with_their_zone(tmp_path):
    settings = settings_for("partners", tmp_path)
    with TestClient(app_of("partners", tmp_path), raise_server_exceptions=False) as client:
        admin = bearer(settings, "admin")
        r = client.post("/v1/partners", headers=admin, json={
            "name": "Aide Île-de-France", "kind": "support_structure", "region": "FR-IDF",
            "sectors": ["trade"], "capacity": 10})
        assert r.status_code == 201, r.text
        client.app.state.runtime.projector.catch_up()
        items = client.get("/v1/partners", headers=admin).json()["items"]
        assert items and all(_has_zone(item["registered_at"]) for item in items)


def test_a_cursor_naming_a_control_character_or_an_overflowing_time_is_422(intake):
    import base64

    for inside in ("2026-01-01T00:00:00+00:00|\x00", "0001-01-01T00:00:00+01:00|x"):
        cursor = base64.urlsafe_b64encode(inside.encode()).decode()
        r = intake.get("/v1/projects", params={"cursor": cursor}, headers=intake.officer)
        assert r.status_code == 422, r.text


def test_an_unexpected_error_keeps_the_connection_for_the_next_request(tmp_path):
    """On a real server: uvicorn closed the connection after a 500 that Starlette raised again."""
    import http.client
    import socket
    import threading
    import time

    import uvicorn

    settings = settings_for("funding", tmp_path)
    app = app_of("funding", tmp_path)

    def broken(*args, **kwargs):
        raise OverflowError("date value out of range")

    app.state.runtime.app.rulebook = broken
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = bearer(settings, "funding_officer")
        connection.request("GET", "/v1/rules", headers=headers)
        first = connection.getresponse()
        assert first.status == 500 and first.getheader("content-type") == "application/problem+json"
        first.read()
        connection.request("GET", "/healthz")  # on the same connection
        assert connection.getresponse().status == 200
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("body", [b"\x14n#\x1fg\xff", b"\xda\x8c\xef"])
def test_a_body_that_is_not_utf8_is_422_not_400(intake, body):
    r = intake.post("/v1/projects", content=body, headers={**intake.officer, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_a_refusal_at_the_edge_carries_the_cors_headers(tmp_path):
    settings = Settings(service="intake", data_dir=tmp_path, keys_dir=tmp_path / "keys", role="api",
                        kafka_bootstrap_servers="127.0.0.1:1", cors_origins=["https://app.example"])
    from services.intake.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/v1/projects?status=%00", headers={"Origin": "https://app.example"})
        assert r.status_code == 422
        assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_the_contract_says_no_control_character_in_free_strings(intake):
    import re

    document = intake.get("/openapi.json").json()
    title = document["components"]["schemas"]["SubmitProject"]["properties"]["title"]
    assert re.fullmatch(title["pattern"], "Boutique\tde quartier") and not re.fullmatch(title["pattern"], "a\x00")
    phone = document["components"]["schemas"]["Promoter"]["properties"]["phone"]
    assert phone["pattern"] == r"^\+?[0-9 ().-]{3,30}$"  # a field's own pattern stays
    status = next(p for p in document["paths"]["/v1/projects"]["get"]["parameters"] if p["name"] == "status")
    assert not re.fullmatch(status["schema"]["anyOf"][0]["pattern"], "a\tb")


def test_a_method_not_allowed_lists_every_method_of_the_path(intake):
    r = intake.request("PUT", "/v1/projects", headers=intake.officer)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["allow"] == "GET, POST"


def test_the_contract_gives_the_years_of_a_date_time_parameter(tmp_path):
    import re

    from shared.api import FIRST_YEAR, LAST_YEAR

    document = TestClient(app_of("funding", tmp_path)).get("/openapi.json").json()
    as_of = next(p for p in document["paths"]["/v1/decisions"]["get"]["parameters"] if p["name"] == "as_of")
    schema = as_of["schema"]["anyOf"][0]
    assert schema["format"] == "date-time"
    years = [year for year in range(1, 10000) if re.search(schema["pattern"], f"{year:04d}-01-01T00:00:00Z")]
    assert years == list(range(FIRST_YEAR, LAST_YEAR + 1))


def test_an_invalid_query_value_is_located_in_the_query(intake):
    r = intake.get("/v1/projects", params={"cursor": "garbage"}, headers=intake.officer)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "cursor"]
