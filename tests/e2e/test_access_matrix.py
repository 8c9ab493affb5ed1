"""Who may call what: every route of every service x every kind of caller, asserted over HTTP.

The routes come from the apps themselves; `EXPECTED` is the one declared table of answers. A
route without a row fails the test (and so does a row whose route is gone), so a new route has
to say who may call it. The callers:

- `anonymous`: no token (401);
- each staff role, with a token holding that role alone;
- `support_structure` and `local_operator`: the two partners the dossier is assigned to, each
  with a partner token; on a route that wants the other kind of partner they act on their own
  dossier with the wrong kind (403);
- `another_partner`: a local operator of the same country that the dossier is not assigned
  to: another partner's thing is not found (404, never 403, not to reveal that it exists);
- `mixed`: a token with the partner role and a staff role together, refused everywhere (403).

An answer is 401, 403, 404 or ALLOWED: the access checks let the call through, whatever the
command then made of it (2xx; 409, a rule of the programme; 422, the data). Every cell is one
request against real processes on PostgreSQL and Kafka, with a dossier taken through the
whole programme to its first tranche, so every path id names something that exists. The
refusals are asked first, on that untouched state, route by route, and must store no event; then
the allowed calls, the ones that end things (withdrawing, closing, forgetting, suspending) last.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from datetime import UTC, date, datetime
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute

from services.funding.application import example_rules
from shared.auth import issue_token
from tests.conftest import POSTGRES, bearer, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.proofs]

SERVICES = ("intake", "partners", "funding", "followup", "audit")
STAFF = ("intake_officer", "funding_officer", "funding_approver", "followup_officer", "auditor", "admin")
PARTNERS = ("support_structure", "local_operator", "another_partner")
CALLERS = ("anonymous", *STAFF, *PARTNERS, "mixed")
ALLOWED = "allowed"
REFUSED_PARTNERS = (403, 403, 403)  # the partner role may not call the route at all
EVERY_PARTNER = (ALLOWED, ALLOWED, ALLOWED)  # a list or a total: a partner gets its own share
THE_DOSSIERS_PARTNERS = (ALLOWED, ALLOWED, 404)
THE_SUPPORT_STRUCTURE = (ALLOWED, 403, 404)  # preparation: the support structure's work
THE_LOCAL_OPERATOR = (403, ALLOWED, 404)  # the study, the field, the spending: the local operator's


def row(*staff: str, partners: tuple[Any, Any, Any] = REFUSED_PARTNERS) -> dict[str, Any]:
    """The answers of one route: staff roles named are allowed (admin always is), others 403."""
    cells: dict[str, Any] = {"anonymous": 401, "mixed": 403}
    cells |= {role: ALLOWED if role in staff or role == "admin" else 403 for role in STAFF}
    cells |= dict(zip(PARTNERS, partners))
    return cells


PUBLIC = dict.fromkeys(CALLERS, ALLOWED)  # no token needed: health, readiness, metrics, public keys
INTAKE_READERS = ("intake_officer", "funding_officer", "funding_approver", "followup_officer", "auditor")
FUNDING_READERS = ("funding_officer", "funding_approver", "auditor")
FOLLOWUP_READERS = ("followup_officer", "intake_officer", "funding_officer", "funding_approver", "auditor")


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """What create_api adds to a service with a store: health, keys, and the admin's operations."""
    return {
        ("GET", "/healthz"): PUBLIC, ("GET", "/readyz"): PUBLIC, ("GET", "/metrics"): PUBLIC,
        ("GET", "/v1/keys"): PUBLIC,
        ("GET", "/v1/admin/parked"): row(), ("POST", "/v1/admin/parked/retry"): row(),
        ("POST", "/v1/admin/projections/{name}/rebuild"): row(),
    }


EXPECTED: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
    "intake": {
        **operations(),
        ("POST", "/v1/projects"): row("intake_officer"),
        ("GET", "/v1/projects"): row(*INTAKE_READERS, partners=EVERY_PARTNER),
        ("GET", "/v1/projects/{project_id}"): row(*INTAKE_READERS, partners=THE_DOSSIERS_PARTNERS),
        ("GET", "/v1/rules"): row(*INTAKE_READERS, partners=EVERY_PARTNER),
        ("POST", "/v1/projects/{project_id}/consent"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/consent/withdrawal"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/skills-review"): row("intake_officer", partners=THE_SUPPORT_STRUCTURE),
        ("POST", "/v1/projects/{project_id}/trainings"): row("intake_officer", partners=THE_SUPPORT_STRUCTURE),
        ("POST", "/v1/projects/{project_id}/business-plan"): row("intake_officer", partners=THE_SUPPORT_STRUCTURE),
        ("POST", "/v1/projects/{project_id}/feasibility-study"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/feasibility-study/conclusion"): row(
            "intake_officer", partners=THE_LOCAL_OPERATOR),
        ("POST", "/v1/projects/{project_id}/committee"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/withdraw"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/close"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/duplicates/{person_id}/confirm"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/duplicates/{person_id}/dismiss"): row("intake_officer"),
        ("POST", "/v1/projects/{project_id}/duplicates/{person_id}/undo"): row("intake_officer"),
        ("POST", "/v1/persons/index"): row(),
        ("POST", "/v1/persons/{person_id}/forget"): row(),
        ("DELETE", "/v1/persons/{person_id}"): row(),
    },
    "partners": {
        **operations(),
        ("POST", "/v1/partners"): row("intake_officer"),
        ("GET", "/v1/partners"): row(*INTAKE_READERS, partners=EVERY_PARTNER),
        # The path names the support structure: the others are not shown it.
        ("GET", "/v1/partners/{partner_id}"): row(*INTAKE_READERS, partners=(ALLOWED, 404, 404)),
        ("POST", "/v1/partners/{partner_id}/accreditation"): row("intake_officer"),
        ("POST", "/v1/partners/{partner_id}/coverage"): row("intake_officer"),
        ("POST", "/v1/partners/{partner_id}/suspend"): row("intake_officer"),
        ("POST", "/v1/partners/{partner_id}/reinstate"): row("intake_officer"),
        ("POST", "/v1/partners/{partner_id}/feed"): row("intake_officer"),
        ("GET", "/v1/caseloads"): row(*INTAKE_READERS, partners=EVERY_PARTNER),
        ("GET", "/v1/assignments"): row(*INTAKE_READERS, partners=EVERY_PARTNER),
        ("GET", "/v1/assignments/{project_id}"): row(*INTAKE_READERS, partners=THE_DOSSIERS_PARTNERS),
    },
    "funding": {
        **operations(),
        ("POST", "/v1/rules"): row(),
        ("GET", "/v1/rules"): row(*FUNDING_READERS),
        ("GET", "/v1/rules/{version}"): row(*FUNDING_READERS),
        ("POST", "/v1/envelopes"): row("funding_approver"),
        ("POST", "/v1/envelopes/{envelope_id}/adjust"): row("funding_approver"),
        ("GET", "/v1/envelopes"): row(*FUNDING_READERS),
        ("GET", "/v1/envelopes/{envelope_id}"): row(*FUNDING_READERS),
        ("POST", "/v1/feasibility-grants"): row("funding_officer"),
        ("GET", "/v1/financing/{project_id}"): row(*FUNDING_READERS),
        ("POST", "/v1/financing/{project_id}/proposal"): row("funding_officer"),
        ("POST", "/v1/financing/{project_id}/decision"): row("funding_approver"),
        ("POST", "/v1/financing/{project_id}/agreement"): row("funding_officer"),
        ("POST", "/v1/financing/{project_id}/tranches"): row("funding_officer"),
        # Funding knows a dossier's local operator only: to it, the support structure is a stranger.
        ("POST", "/v1/financing/{project_id}/tranches/{tranche}/evidence"): row(
            "funding_officer", partners=(404, ALLOWED, 404)),
        ("POST", "/v1/financing/{project_id}/tranches/{tranche}/reconciliation"): row("funding_officer"),
        ("POST", "/v1/return-aid"): row("funding_officer"),
        ("GET", "/v1/return-aid/{aid_id}"): row(*FUNDING_READERS),
        ("POST", "/v1/return-aid/{aid_id}/decision"): row("funding_approver"),
        ("GET", "/v1/decisions"): row(*FUNDING_READERS),
    },
    "followup": {
        **operations(),
        ("GET", "/v1/followups"): row(*FOLLOWUP_READERS, partners=EVERY_PARTNER),
        # The follow-up is the local operator's: the support structure's part ended with the study.
        ("GET", "/v1/followups/{project_id}"): row(*FOLLOWUP_READERS, partners=THE_LOCAL_OPERATOR),
        ("POST", "/v1/followups/{project_id}/launch"): row("followup_officer", partners=THE_LOCAL_OPERATOR),
        ("POST", "/v1/followups/{project_id}/visits"): row("followup_officer", partners=THE_LOCAL_OPERATOR),
        ("POST", "/v1/followups/{project_id}/visits/{visit_id}/resolution"): row("followup_officer"),
        ("POST", "/v1/followups/{project_id}/complete"): row("followup_officer"),
        ("POST", "/v1/followups/{project_id}/survey"): row("followup_officer", partners=THE_LOCAL_OPERATOR),
        ("GET", "/v1/indicators"): row(*FOLLOWUP_READERS, partners=EVERY_PARTNER),
    },
    "audit": {
        ("GET", "/healthz"): PUBLIC, ("GET", "/readyz"): PUBLIC, ("GET", "/metrics"): PUBLIC,
        ("GET", "/v1/verification"): row("auditor"),
        ("GET", "/v1/proofs/inclusion"): row("auditor"),
        ("GET", "/v1/proofs/consistency"): row("auditor"),
        ("GET", "/v1/ledger"): row("auditor"),
    },
}

# Calls that end something: asked last, so that every other allowed call finds things as they were.
ENDING = ("/withdraw", "/close", "/persons/", "/suspend", "/complete", "/rebuild")


def app_routes(service: str, tmp_path) -> set[tuple[str, str]]:
    """(method, path) of every route the service's app serves (its OpenAPI aside)."""
    from shared.settings import Settings

    module = __import__(f"services.{service}.main", fromlist=["create_app"])
    app = module.create_app(Settings(service=service, data_dir=tmp_path, keys_dir=tmp_path / "keys",
                                     kafka_bootstrap_servers="127.0.0.1:1"))
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((method, prefix + route.path) for method in route.methods)
            elif hasattr(route, "original_router"):  # an included router, kept whole by FastAPI
                walk(route.original_router.routes, prefix + route.include_context.prefix)

    walk(app.routes, "")
    return found


def test_every_route_has_a_row(tmp_path):
    for service in SERVICES:
        routes = app_routes(service, tmp_path / service)
        declared = set(EXPECTED[service])
        assert not routes - declared, f"{service}: routes without a row in EXPECTED: {sorted(routes - declared)}"
        assert not declared - routes, f"{service}: rows for routes that are gone: {sorted(declared - routes)}"
        for cells in EXPECTED[service].values():
            assert set(cells) == set(CALLERS)


wait_long = functools.partial(wait_for, timeout=90.0)


def set_up_the_programme(start_service) -> dict[str, Any]:
    """The five services as processes and one dossier taken to its first tranche: its support
    structure and local operator, its envelope, its financing, its follow-up."""
    intake, partners = start_service("intake"), start_service("partners")
    funding, followup = start_service("funding"), start_service("followup")
    audit = start_service("audit")
    services = {"intake": intake, "partners": partners, "funding": funding, "followup": followup, "audit": audit}
    for service in services.values():
        service.wait_ready()
    settings = intake.settings
    staff = bearer(settings, "intake_officer", sub="matrix-ines")
    admin = bearer(settings, "admin", sub="matrix-root")
    officer = bearer(settings, "funding_officer", sub="matrix-olga")
    approver = bearer(settings, "funding_approver", sub="matrix-anna")
    rules = example_rules()
    assert httpx.post(f"{funding.url}/v1/rules", json=rules, headers=admin).status_code == 201
    wait_long(lambda: httpx.get(f"{intake.url}/v1/rules", headers=staff).json()["version"] == rules["version"],
              "intake to adopt the rules")
    envelope = httpx.post(f"{funding.url}/v1/envelopes", headers=approver, json={
        "year": datetime.now(UTC).year, "country": "SN", "amount_cents": 5_000_000}).json()["id"]

    def register(body: dict[str, Any]) -> str:
        answer = httpx.post(f"{partners.url}/v1/partners", headers=staff, json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    support = register({"name": "Structure IDF", "kind": "support_structure", "region": "FR-IDF",
                        "countries": [], "sectors": [], "capacity": 5})
    operator = register({"name": "Opérateur Thiès", "kind": "local_operator", "countries": ["SN"],
                         "sectors": [], "capacity": 5})
    project = httpx.post(f"{intake.url}/v1/projects", headers=staff, json={
        "promoter": {"given_name": "Awa", "family_name": "Ndiaye", "birth_date": "1990-05-05",
                     "phone": "+33 6 00 00 00 01", "residence_status": "regular"},
        "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique", "description": "",
        "requested_amount_cents": 600_000, "own_contribution_cents": 100_000, "planned_jobs": 2}).json()["id"]
    dossier_url = f"{intake.url}/v1/projects/{project}"

    def dossier() -> dict[str, Any]:
        return httpx.get(dossier_url, headers=staff).json()

    wait_long(lambda: dossier()["status"] == "assigned", "the assignment")
    assert (dossier()["support_structure_id"], dossier()["local_operator_id"]) == (support, operator)
    # Registered once the dossier is assigned, so that it is not the one chosen.
    another = register({"name": "Autre opérateur", "kind": "local_operator", "countries": ["SN"],
                        "sectors": [], "capacity": 5})
    for path, body in (("consent", {"purposes": ["funding"], "partners": []}),
                       ("business-plan", {"budget_lines": [{"label": "stock", "amount_cents": 600_000}],
                                          "own_contribution_cents": 100_000, "planned_jobs": 2}),
                       ("feasibility-study", None),
                       ("feasibility-study/conclusion", {"conclusion": "feasible", "summary": "ok"})):
        answer = httpx.post(f"{dossier_url}/{path}", json=body, headers=staff)
        assert answer.status_code == 200, answer.text
    wait_long(lambda: (dossier()["feasibility_grant"] or {}).get("outcome") == "awarded", "the feasibility grant")
    assert httpx.post(f"{dossier_url}/committee", headers=staff).status_code == 200
    financing = f"{funding.url}/v1/financing/{project}"
    wait_long(lambda: (r := httpx.get(financing, headers=officer)).status_code == 200
              and r.json().get("financing") == "requested", "the financing requested")
    for path, body, who in (("proposal", {"amount_cents": 600_000, "envelope_id": envelope, "justification": "ok"},
                             officer),
                            ("decision", {"decision": "approve", "justification": "viable"}, approver),
                            ("agreement", {"signed_on": date.today().isoformat()}, officer)):
        answer = httpx.post(f"{financing}/{path}", json=body, headers=who)
        assert answer.status_code == 200, answer.text
    first = answer.json()["tranches"][0]["amount_cents"]
    answer = httpx.post(f"{financing}/tranches", headers=officer, json={
        "amount_cents": first, "payee": "operator:thies", "payment_reference": "VIR-1"})
    assert answer.status_code == 200, answer.text
    answer = httpx.post(f"{funding.url}/v1/envelopes", headers=approver, json={
        "purpose": "return_aid", "year": datetime.now(UTC).year, "amount_cents": 5_000_000})
    assert answer.status_code == 201, answer.text
    aid = httpx.post(f"{funding.url}/v1/return-aid", headers=officer, json={
        "person_id": dossier()["person_id"], "country": "SN", "residence_status": "regular", "justification": "ok"})
    assert aid.status_code == 201, aid.text
    field = bearer(settings, "followup_officer", sub="matrix-fatou")
    wait_long(lambda: httpx.get(f"{followup.url}/v1/followups/{project}", headers=field).status_code == 200,
              "the follow-up opened by the first tranche")
    return {"services": services, "project_id": project, "person_id": dossier()["person_id"],
            "support_structure": support, "local_operator": operator, "another_partner": another,
            "envelope_id": envelope, "rules_version": rules["version"], "tranche_amount": first,
            "aid_id": aid.json()["id"]}


def tokens(settings, ids: dict[str, Any]) -> dict[str, dict[str, str]]:
    headers = {"anonymous": {}}
    headers |= {role: bearer(settings, role, sub=f"matrix-{role}") for role in STAFF}
    headers |= {who: bearer(settings, "partner", sub=f"matrix-{who}", partner_id=ids[who]) for who in PARTNERS}
    mixed = issue_token(settings, "partner", sub="matrix-mixed", partner_id=ids["local_operator"],
                        roles=["partner", "intake_officer"])
    headers["mixed"] = {"Authorization": f"Bearer {mixed}"}
    return headers


def request_of(service: str, method: str, path: str, ids: dict[str, Any]) -> dict[str, Any]:
    """A call of the route with real ids and data it accepts (so an answer is about access)."""
    today = date.today().isoformat()
    path_ids = {
        "project_id": ids["project_id"], "person_id": ids["person_id"], "partner_id": ids["support_structure"],
        "envelope_id": ids["envelope_id"], "version": ids["rules_version"], "tranche": 1, "visit_id": "matrix:1",
        "aid_id": ids["aid_id"],
        "name": {"intake": "dossiers_v1", "partners": "partners_v1", "funding": "decisions_v1",
                 "followup": "followups_v1"}.get(service, ""),
    }
    unknown = set(re.findall(r"{(\w+)}", path)) - set(path_ids)
    assert not unknown, f"{service} {method} {path}: say in request_of which thing {unknown} names"
    url = path.format(**path_ids)
    bodies: dict[str, Any] = {
        "/v1/projects": {
            "promoter": {"given_name": "Moussa", "family_name": "Diallo", "birth_date": "1985-01-02",
                         "phone": "+33 6 00 00 00 02", "residence_status": "regular"},
            "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Atelier", "description": "",
            "requested_amount_cents": 400_000, "own_contribution_cents": 50_000, "planned_jobs": 1},
        "/consent": {"purposes": ["funding"], "partners": []},
        "/consent/withdrawal": {"purposes": ["funding"], "partners": []},
        "/skills-review": {"summary": "bilan fait"},
        "/trainings": {"course": "gestion", "hours": 12, "completed_on": today},
        "/business-plan": {"budget_lines": [{"label": "stock", "amount_cents": 600_000}],
                           "own_contribution_cents": 100_000, "planned_jobs": 2},
        "/feasibility-study/conclusion": {"conclusion": "feasible", "summary": "ok"},
        "/forget": {"reason": "entered_in_error"},
        "/withdraw": {"reason": "the promoter gives up"},
        "/close": {"reason": "abandoned"},
        "/v1/partners": {"name": "Nouvelle structure", "kind": "support_structure", "region": "FR-ARA",
                         "countries": [], "sectors": [], "capacity": 3},
        "/accreditation": {"agreement": "CONV-1", "valid_from": "2026-01-01", "valid_to": "2030-12-31"},
        "/coverage": {"region": "FR-IDF", "countries": [], "sectors": [], "capacity": 6},
        "/suspend": {"reason": "audit in progress"},
        "/v1/rules": {**example_rules(), "version": "matrix-2"},
        "/v1/envelopes": {"year": date.today().year, "country": "ML", "amount_cents": 100_000},
        "/adjust": {"amount_cents": 5_000_001, "reason": "more"},
        "/v1/feasibility-grants": {"project_id": ids["project_id"], "amount_cents": 10_000, "justification": "x"},
        "/proposal": {"amount_cents": 600_000, "envelope_id": ids["envelope_id"], "justification": "ok"},
        "/decision": {"decision": "approve", "justification": "viable"},
        "/agreement": {"signed_on": today},
        "/tranches": {"amount_cents": 1, "payee": "operator:thies", "payment_reference": "VIR-X"},
        "/evidence": {"items": [{"label": "factures", "amount_cents": ids["tranche_amount"]}]},
        "/v1/return-aid": {"person_id": ids["person_id"], "country": "SN", "residence_status": "regular",
                           "justification": "return"},
        "/launch": {"launched_on": today, "legal_form": "GIE", "registration": "RC-1"},
        "/visits": {"visit_id": "matrix:1", "visited_on": today, "business_status": "active",
                    "jobs": {"paid": 1, "family": 0}, "revenue_band": "under_150"},
        "/resolution": {"keep": "recorded"},
        "/complete": {"outcome": "business_active", "completed_on": today},
        "/survey": {"surveyed_on": today, "business_status": "active", "jobs": {"paid": 1, "family": 0},
                    "revenue_band": "under_150"},
    }
    call: dict[str, Any] = {"method": method, "url": url}
    if method == "POST":
        body = next((b for end, b in bodies.items() if path.endswith(end) or path == end), None)
        if body is not None:
            call["json"] = body
    if method == "DELETE":
        call["json"] = bodies["/forget"]
    if path == "/v1/proofs/inclusion":
        call["params"] = {"service": "intake", "seq": 0}
    if path == "/v1/proofs/consistency":
        call["params"] = {"service": "intake", "from": 1}
    if path == "/v1/ledger":
        call["params"] = {"compare": "false"}
    return call


def stored_events(service: Any) -> int:
    """How many events the service's store holds (the audit keeps none)."""
    with psycopg.connect(dbname=service.settings.database_name, **POSTGRES) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name LIKE %s", ("%\\_events",))]
        return sum(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables)


def settled(services: dict[str, Any]) -> dict[str, int]:
    """The stores' counts once the set-up's events have all been heard (unchanged for two seconds)."""
    def count() -> dict[str, int]:
        return {name: stored_events(service) for name, service in services.items()}

    last, since = count(), time.monotonic()
    while time.monotonic() - since < 2:
        time.sleep(0.25)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return last


def verdict(status: int) -> Any:
    return status if status in (401, 403, 404) else ALLOWED


def test_every_route_answers_every_caller_as_declared(start_service, proof_summary):
    ids = set_up_the_programme(start_service)
    services = ids["services"]
    headers = tokens(services["intake"].settings, ids)
    cells = [(service, method, path, caller, expected)
             for service, rows in EXPECTED.items() for (method, path), answers in rows.items()
             for caller, expected in answers.items()]
    # Refusals first (on the state as set up), then what is allowed, partners before staff (a
    # partner's own work comes before the officer's), the calls that end something last.
    cells.sort(key=lambda c: (c[4] == ALLOWED, any(end in c[2] for end in ENDING), c[3] not in PARTNERS))
    wrong: list[str] = []
    stored = settled(services)
    with httpx.Client(timeout=30) as client:

        def ask(service: str, method: str, path: str, caller: str, expected: Any) -> None:
            call = request_of(service, method, path, ids)
            answer = client.request(call.pop("method"), services[service].url + call.pop("url"), **call,
                                    headers=headers[caller])
            if answer.status_code >= 500 or verdict(answer.status_code) != expected:
                wrong.append(f"{service} {method} {path} as {caller}: expected {expected}, got "
                             f"{answer.status_code} {answer.text[:160]}")

        for (service, method, path), group in itertools.groupby((c for c in cells if c[4] != ALLOWED),
                                                                key=lambda c: c[:3]):
            for cell in group:
                ask(*cell)
            if (now := stored_events(services[service])) != stored[service]:  # a refusal stores nothing
                wrong.append(f"{service} {method} {path}: {now - stored[service]} events stored while it was refused "
                             "(by the refused calls, or heard from a call refused wrongly before)")
                stored[service] = now
        for cell in cells:
            if cell[4] == ALLOWED:
                ask(*cell)
    asked = len(cells)
    proof_summary.append(f"access matrix: {asked} cells asked ({len(EXPECTED)} services, "
                         f"{sum(map(len, EXPECTED.values()))} routes, {len(CALLERS)} callers), {len(wrong)} wrong")
    assert not wrong, f"{len(wrong)} of {asked} cells differ from EXPECTED:\n" + "\n".join(wrong)
