"""The partners API in-process, on real PostgreSQL and Kafka.

Assignment decisions are driven by calling the application (`runtime.app`) and the
consumer's handler directly: the Kafka round trip is the end-to-end tests' business.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from fastapi.testclient import TestClient

from services.partners import consumers
from services.partners.feeds import PartnerFeed
from services.partners.main import create_app
from shared.envelope import CloudEvent, record_from_state
from shared.http import Runtime
from shared.store import event_metadata, processing
from tests.conftest import actor, bearer
from tests.integration.kafka_tools import produce

pytestmark = pytest.mark.integration


class Service:
    """The partners service under test, and who calls it."""

    def __init__(self, client: TestClient, settings: Any):
        self.client = client
        self.settings = settings
        self.runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        self.app = self.runtime.app
        self.officer = bearer(settings, "intake_officer", sub="olga")

    def as_role(self, role: str, partner_id: str | None = None) -> dict[str, str]:
        return bearer(self.settings, role, partner_id=partner_id)

    def register(self, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/v1/partners", json=partner_body(**overrides), headers=self.officer)
        assert response.status_code == 201, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(path, json=body, headers=headers or self.officer)

    def written(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def views(self) -> None:
        self.runtime.projector.catch_up()  # type: ignore[union-attr]

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        self.views()
        return self.client.get(path, params=params, headers=headers or self.as_role("auditor"))


def partner_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Aide Île-de-France", "kind": "support_structure", "region": "FR-IDF",
                            "sectors": ["trade"], "capacity": 10}
    body.update(overrides)
    return body


def operator_body(**overrides: Any) -> dict[str, Any]:
    return partner_body(**{"name": "Bamako Conseil", "kind": "local_operator", "region": None,
                           "countries": ["ML"], **overrides})


@pytest.fixture
def service(make_settings):
    settings = make_settings("partners")
    with TestClient(create_app(settings)) as client:
        yield Service(client, settings)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("https://")
    return problem


# --- the network ---------------------------------------------------------------------------------


def test_register_then_read_a_partner(service):
    created = service.post("/v1/partners", operator_body(countries=["SN", "ML"], sectors=["Trade", "crafts"]))
    assert created.status_code == 201
    body = created.json()
    assert body["kind"] == "local_operator" and body["status"] == "active" and body["version"] == 1
    assert created.headers["location"] == f"/v1/partners/{body['id']}"

    detail = service.get(f"/v1/partners/{body['id']}").json()
    assert detail["countries"] == ["ML", "SN"]
    assert detail["sectors"] == ["crafts", "trade"]
    assert detail["caseload"] == 0 and detail["available"] is True
    assert detail["accreditation"] is None and detail["feed_enabled"] is False
    assert detail["timeline"][0]["type"] == "PartnerRegistered"
    assert detail["timeline"][0]["actor"] == actor(service.settings, "olga")

    assert_problem(service.get(f"/v1/partners/{uuid.uuid4()}"), 404)


def test_list_filters_and_pages_through_the_network(service):
    paris = service.register(name="Paris Accueil")
    service.register(name="Créteil Accueil")
    lyon = service.register(name="Lyon Accueil", region="FR-ARA")
    bamako = service.client.post("/v1/partners", json=operator_body(countries=["ML", "SN"]),
                                 headers=service.officer).json()
    lome = service.client.post("/v1/partners", json=operator_body(name="Lomé Études", countries=["TG"]),
                               headers=service.officer).json()
    service.client.post(f"/v1/partners/{lyon['id']}/suspend", json={"reason": "audit"}, headers=service.officer)

    def ids(**params: Any) -> list[str]:
        response = service.get("/v1/partners", **params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert len(ids()) == 5
    assert set(ids(kind="local_operator")) == {bamako["id"], lome["id"]}
    assert ids(country="SN") == [bamako["id"]]
    assert ids(country="TG") == [lome["id"]]
    assert ids(region="FR-ARA") == [lyon["id"]]
    assert ids(status="suspended") == [lyon["id"]]
    assert len(ids(kind="support_structure", status="active")) == 2
    assert ids(kind="support_structure", region="FR-IDF")[0] == paris["id"]  # oldest registration first

    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = service.get("/v1/partners", **params).json()
        pages.append([p["id"] for p in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == ids()

    assert_problem(service.get("/v1/partners", cursor="not-a-cursor"), 422)
    assert_problem(service.get("/v1/partners", country="ml"), 422)
    assert_problem(service.get("/v1/partners", kind="bank"), 422)


def test_suspend_reinstate_and_their_illegal_transitions(service):
    partner = service.register()
    url = f"/v1/partners/{partner['id']}"
    suspended = service.post(f"{url}/suspend", {"reason": "agreement under review"})
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"

    again = assert_problem(service.post(f"{url}/suspend", {"reason": "again"}), 409)
    assert again["rule"] == "suspend_active_partner"
    assert again["type"].endswith("/rule/suspend_active_partner")

    detail = service.get(url).json()
    assert detail["status"] == "suspended" and detail["suspension_reason"] == "agreement under review"
    assert detail["available"] is False

    reinstated = service.client.post(f"{url}/reinstate", headers=service.officer)
    assert reinstated.status_code == 200 and reinstated.json()["status"] == "active"
    twice = assert_problem(service.client.post(f"{url}/reinstate", headers=service.officer), 409)
    assert twice["rule"] == "reinstate_suspended_partner"

    assert service.client.post(f"{url}/feed", headers=service.officer).json()["feed_enabled"] is True
    assert assert_problem(service.post(f"{url}/feed"), 409)["rule"] == "feed_enabled_once"

    assert_problem(service.client.post(f"/v1/partners/{uuid.uuid4()}/suspend", json={"reason": "x"},
                                       headers=service.officer), 404)
    assert [e["type"] for e in service.get(url).json()["timeline"]] == [
        "PartnerRegistered", "PartnerSuspended", "PartnerReinstated", "PartnerFeedEnabled"]


def test_accreditation_and_coverage(service):
    partner = service.register()
    url = f"/v1/partners/{partner['id']}"
    accredited = service.client.post(f"{url}/accreditation", headers=service.officer, json={
        "agreement": "CONV-2026-IDF-01", "valid_from": "2026-01-01", "valid_to": "2099-12-31"})
    assert accredited.status_code == 200, accredited.text
    assert service.get(url).json()["accreditation"] == {
        "agreement": "CONV-2026-IDF-01", "valid_from": "2026-01-01", "valid_to": "2099-12-31"}
    listed = service.get("/v1/partners").json()["items"][0]
    assert listed["accredited_until"] == "2099-12-31"

    backwards = assert_problem(service.client.post(f"{url}/accreditation", headers=service.officer, json={
        "agreement": "X", "valid_from": "2026-12-31", "valid_to": "2026-01-01"}), 422)
    assert backwards["errors"][0]["loc"] == ["body", "valid_to"]

    changed = service.client.post(f"{url}/coverage", headers=service.officer,
                                  json={"region": "FR-HDF", "sectors": ["crafts"], "capacity": 3})
    assert changed.status_code == 200, changed.text
    assert service.get("/v1/partners", region="FR-HDF").json()["items"][0]["capacity"] == 3
    same = assert_problem(service.client.post(f"{url}/coverage", headers=service.officer,
                                              json={"region": "FR-HDF", "sectors": ["Crafts"], "capacity": 3}), 409)
    assert same["rule"] == "coverage_changes"
    assert_problem(service.client.post(f"{url}/coverage", headers=service.officer,
                                       json={"countries": ["ML"], "capacity": 3}), 422)


@pytest.mark.parametrize("body", [
    partner_body(region=None),  # a support structure needs its region
    partner_body(region="FR-XX"),
    partner_body(countries=["ML"]),  # a support structure covers no countries
    operator_body(countries=[]),
    operator_body(countries=["ml"]),
    operator_body(countries=["MLI"]),
    operator_body(countries=[f"{a}{b}" for a in "ABCDEFGH" for b in "ABCDEFGH"]),  # 64 > 60
    partner_body(capacity=0),
    partner_body(capacity=10_001),
    partner_body(capacity="5"),
    partner_body(capacity=2.0),
    partner_body(name=""),
    partner_body(name="x" * 201),
    partner_body(kind="bank"),
    partner_body(sectors=["s" * 61]),
    partner_body(sectors=[f"sector {i}" for i in range(31)]),
    partner_body(colour="blue"),
    {"name": "No capacity", "kind": "support_structure", "region": "FR-IDF"},
])
def test_bad_input_is_422_and_writes_nothing(service, body):
    before = service.written()
    assert_problem(service.client.post("/v1/partners", json=body, headers=service.officer), 422)
    assert service.written() == before


def test_a_body_that_is_not_json_is_422(service):
    response = service.client.post("/v1/partners", content=b"{not json", headers={
        **service.officer, "content-type": "application/json"})
    assert_problem(response, 422)


def test_roles(service):
    partner = service.register()
    url = f"/v1/partners/{partner['id']}"
    for role in ("funding_officer", "funding_approver", "followup_officer", "auditor", "partner"):
        headers = service.as_role(role, partner_id=partner["id"] if role == "partner" else None)
        assert_problem(service.client.post("/v1/partners", json=partner_body(), headers=headers), 403)
        assert_problem(service.client.post(f"{url}/suspend", json={"reason": "x"}, headers=headers), 403)
    assert service.post(f"{url}/suspend", {"reason": "x"}, headers=service.as_role("admin")).status_code == 200
    for role in ("intake_officer", "funding_officer", "funding_approver", "followup_officer", "auditor", "admin"):
        assert service.get(url, headers=service.as_role(role)).status_code == 200
        assert service.get("/v1/caseloads", headers=service.as_role(role)).status_code == 200
    assert_problem(service.client.get(url), 401)
    assert_problem(service.client.get(url, headers={"Authorization": "Bearer nonsense"}), 401)


def test_idempotency_key_replays_the_first_answer(service):
    headers = {**service.officer, "Idempotency-Key": "register-paris-1"}
    first = service.client.post("/v1/partners", json=partner_body(), headers=headers)
    written = service.written()
    again = service.client.post("/v1/partners", json=partner_body(), headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert service.written() == written
    other = service.client.post("/v1/partners", json=partner_body(name="Other"), headers=headers)
    assert_problem(other, 422)


# --- assignment ----------------------------------------------------------------------------------


def test_a_dossier_gets_the_least_loaded_partners_and_frees_them_when_it_ends(service):
    busy = service.register(name="A busy structure")
    free = service.register(name="B free structure")
    service.register(name="Lyon", region="FR-ARA")
    generalist = service.client.post("/v1/partners", json=operator_body(name="Generalist", sectors=[]),
                                     headers=service.officer).json()
    trade = service.client.post("/v1/partners", json=operator_body(name="Trade experts", sectors=["Trade"]),
                                headers=service.officer).json()

    first = service.app.assign(uuid.uuid4(), "ML", "FR-IDF", "trade")
    # Equal caseloads: the name decides, so "A busy structure" takes the first dossier.
    assert first.support_structure_id == busy["id"]
    assert first.local_operator_id == trade["id"] and first.sector_matched
    second = service.app.assign(uuid.uuid4(), "ML", "FR-IDF", "trade")
    assert second.support_structure_id == free["id"]  # the first dossier counts in the caseloads
    assert second.local_operator_id == trade["id"]  # the operator of the sector, however loaded
    third = service.app.assign(uuid.uuid4(), "ML", "FR-IDF", "retail")
    assert third.local_operator_id == generalist["id"] and third.sector_matched is False

    shown = service.get(f"/v1/assignments/{first.id}").json()
    assert shown["status"] == "assigned"
    assert (shown["support_structure_id"], shown["local_operator_id"]) == (busy["id"], trade["id"])
    assert [e["type"] for e in shown["timeline"]] == ["AssignmentRequested", "PartnersAssigned"]
    assert service.get(f"/v1/partners/{trade['id']}").json()["caseload"] == 2

    loads = {c["partner_id"]: c for c in service.get("/v1/caseloads").json()}
    assert loads[trade["id"]]["caseload"] == 2 and loads[trade["id"]]["free"] == 8
    assert loads[busy["id"]]["caseload"] == 2 and loads[free["id"]]["caseload"] == 1

    # The same dossier asking again changes nothing.
    written = service.written()
    assert service.app.assign(first.id, "ML", "FR-IDF", "trade").version == first.version
    assert service.written() == written

    service.app.end_assignment(first.id, "dossier_withdrawn")
    assert service.get(f"/v1/partners/{trade['id']}").json()["caseload"] == 1
    ended = service.get(f"/v1/assignments/{first.id}").json()
    assert ended["status"] == "ended" and ended["end_reason"] == "dossier_withdrawn"
    assert service.app.end_assignment(uuid.uuid4(), "dossier_withdrawn") is None  # never asked: nothing to end

    assert_problem(service.get(f"/v1/assignments/{uuid.uuid4()}"), 404)
    statuses = {a["project_id"]: a["status"] for a in service.get("/v1/assignments").json()["items"]}
    assert statuses[str(first.id)] == "ended" and statuses[str(second.id)] == "assigned"
    involving = service.get("/v1/assignments", partner_id=free["id"]).json()["items"]
    assert [a["project_id"] for a in involving] == [str(second.id)]


def test_a_dossier_waits_for_missing_partners_and_gets_them_when_the_network_grows(service):
    project_id = uuid.uuid4()
    waiting = service.app.assign(project_id, "SN", "FR-PAC", "agriculture")
    assert waiting.status == "pending" and waiting.missing == ["support_structure", "local_operator"]
    shown = service.get(f"/v1/assignments/{project_id}").json()
    assert shown["status"] == "pending" and shown["missing"] == ["support_structure", "local_operator"]
    pending = service.get("/v1/assignments", status="pending").json()["items"]
    assert [a["project_id"] for a in pending] == [str(project_id)]

    marseille = service.register(name="Marseille Accueil", region="FR-PAC")
    assert service.get(f"/v1/assignments/{project_id}").json()["missing"] == ["local_operator"]
    dakar = service.client.post("/v1/partners", json=operator_body(name="Dakar Études", countries=["SN"], capacity=1),
                                headers=service.officer).json()
    assigned = service.get(f"/v1/assignments/{project_id}").json()
    assert assigned["status"] == "assigned"
    assert (assigned["support_structure_id"], assigned["local_operator_id"]) == (marseille["id"], dakar["id"])
    decided = event_metadata(list(service.app.events.get(project_id))[-1])
    # The retry is the service's own decision, in the dossier's flow, caused by the registration request.
    assert decided["actor"] == "service:partners" and decided["correlationid"] == str(project_id)
    assert decided["causationid"].startswith("request:")

    # Dakar is full now (capacity 1): the next Senegalese dossier waits ...
    other = service.app.assign(uuid.uuid4(), "SN", "FR-PAC", "agriculture")
    assert other.missing == ["local_operator"]
    assert service.app.assign_pending() == 0  # nothing changed: nothing assigned, nothing written
    # ... until the first dossier ends and the periodic retry finds the room.
    service.app.end_assignment(project_id, "dossier_closed: abandoned")
    assert service.app.assign_pending() == 1
    assert service.get(f"/v1/assignments/{other.id}").json()["local_operator_id"] == dakar["id"]


def test_suspended_and_expired_partners_get_no_dossier_until_reinstated_or_renewed(service):
    paris = service.register(name="Paris")
    bamako = service.client.post("/v1/partners", json=operator_body(), headers=service.officer).json()
    service.client.post(f"/v1/partners/{paris['id']}/suspend", json={"reason": "audit"}, headers=service.officer)
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    service.client.post(f"/v1/partners/{bamako['id']}/accreditation", headers=service.officer, json={
        "agreement": "CONV-2025", "valid_from": "2025-01-01", "valid_to": yesterday.isoformat()})

    project_id = uuid.uuid4()
    assert service.app.assign(project_id, "ML", "FR-IDF", "trade").missing == ["support_structure", "local_operator"]
    service.client.post(f"/v1/partners/{paris['id']}/reinstate", headers=service.officer)
    assert service.get(f"/v1/assignments/{project_id}").json()["missing"] == ["local_operator"]
    service.client.post(f"/v1/partners/{bamako['id']}/accreditation", headers=service.officer, json={
        "agreement": "CONV-2026", "valid_from": yesterday.isoformat(), "valid_to": date(2099, 1, 1).isoformat()})
    assert service.get(f"/v1/assignments/{project_id}").json()["status"] == "assigned"


def test_the_consumer_assigns_eligible_dossiers_in_one_save_and_ends_them(service):
    handle = consumers.handler(service.app)
    project_id = str(uuid.uuid4())
    service.register()
    service.client.post("/v1/partners", json=operator_body(), headers=service.officer)

    def deliver(offset: int, name: str, **data: Any) -> None:
        event = CloudEvent(
            specversion="1.0", id=str(uuid.uuid4()), source="/passerelle/intake",
            type=f"passerelle.intake.{name}.v1", subject=project_id, time=datetime.now(timezone.utc),
            data=data, sequence=offset, aggregateversion=offset + 1, actor="service:intake",
            correlationid=project_id, causationid=project_id, leafhash="0" * 64,
        )
        # As the kernel's consumer does: the handler may cause one save, which records the position.
        with processing(Tracking("intake.events:0", offset)) as state:
            handle(event)
            if not state.recorded:
                service.app.save()

    deliver(0, "ProjectSubmitted", country="ML")
    deliver(1, "EligibilityAssessed", eligible=False, reasons=["over_ceiling"], rule_version="r1",
            country="ML", french_region="FR-IDF", sector="trade")
    assert_problem(service.get(f"/v1/assignments/{project_id}"), 404)
    deliver(2, "EligibilityAssessed", eligible=True, reasons=[], rule_version="r1",
            country="ML", french_region="FR-IDF", sector="trade")
    assert service.get(f"/v1/assignments/{project_id}").json()["status"] == "assigned"
    deliver(3, "EligibilityAssessed", eligible=True, reasons=[], rule_version="r1",
            country="ML", french_region="FR-IDF", sector="trade")  # assigned already: a no-op
    deliver(4, "ProjectClosed", reason="abandoned", previous_status="preparing")
    shown = service.get(f"/v1/assignments/{project_id}").json()
    assert shown["status"] == "ended" and shown["end_reason"] == "dossier_closed: abandoned"
    assert shown["version"] == 3
    deliver(5, "ProjectWithdrawn", reason="moved", previous_status="closed")  # ended already: a no-op
    assert service.app.tracking_position("intake.events:0") == 5


# --- what a partner sees -------------------------------------------------------------------------


def test_a_partner_sees_only_itself_and_its_dossiers(service):
    mine = service.register(name="Mine")
    theirs = service.register(name="Theirs", region="FR-ARA")
    service.client.post("/v1/partners", json=operator_body(), headers=service.officer)
    my_dossier = service.app.assign(uuid.uuid4(), "ML", "FR-IDF", "trade")
    their_dossier = service.app.assign(uuid.uuid4(), "ML", "FR-ARA", "trade")
    me = service.as_role("partner", partner_id=mine["id"])

    listed = service.get("/v1/partners", headers=me).json()["items"]
    assert [p["id"] for p in listed] == [mine["id"]]
    own = service.get(f"/v1/partners/{mine['id']}", headers=me).json()
    assert own["caseload"] == 1
    assert own["timeline"] and all("actor" not in t for t in own["timeline"])  # not the officers' ids
    assert_problem(service.get(f"/v1/partners/{theirs['id']}", headers=me), 404)
    assert [c["partner_id"] for c in service.get("/v1/caseloads", headers=me).json()] == [mine["id"]]

    assignment = service.get(f"/v1/assignments/{my_dossier.id}", headers=me)
    assert assignment.status_code == 200 and all("actor" not in t for t in assignment.json()["timeline"])
    assert_problem(service.get(f"/v1/assignments/{their_dossier.id}", headers=me), 404)
    seen = service.get("/v1/assignments", headers=me, partner_id=theirs["id"]).json()["items"]
    assert [a["project_id"] for a in seen] == [str(my_dossier.id)]

    nobody = service.as_role("partner")  # a partner token without partner_id sees nothing
    assert service.get("/v1/partners", headers=nobody).json()["items"] == []


# --- read models ---------------------------------------------------------------------------------


def test_rebuilding_the_read_models_gives_the_same_rows(service):
    from services.partners.projections import assignments, partners

    structure = service.register()
    service.client.post("/v1/partners", json=operator_body(), headers=service.officer)
    service.client.post(f"/v1/partners/{structure['id']}/suspend", json={"reason": "audit"}, headers=service.officer)
    service.client.post(f"/v1/partners/{structure['id']}/reinstate", headers=service.officer)
    ended = service.app.assign(uuid.uuid4(), "ML", "FR-IDF", "trade")
    service.app.assign(uuid.uuid4(), "ML", "FR-IDF", "trade")
    service.app.assign(uuid.uuid4(), "SN", "FR-IDF", "trade")
    service.app.end_assignment(ended.id, "dossier_withdrawn")
    service.views()

    def rows() -> dict[str, list[Any]]:
        with service.runtime.projector.engine.connect() as conn:  # type: ignore[union-attr]
            return {t.name: sorted(tuple(r) for r in conn.execute(t.select())) for t in (partners, assignments)}

    before = rows()
    admin = service.as_role("admin")
    for name in ("partners_v1", "assignments_v1"):
        rebuilt = service.client.post(f"/v1/admin/projections/{name}/rebuild", headers=admin)
        assert rebuilt.status_code == 200, rebuilt.text
    assert rows() == before
    assert {r[0]: r[7] for r in before["partners_v1"]}[structure["id"]] == 1  # caseload after the end


def test_the_api_is_documented(service):
    paths = service.client.get("/openapi.json").json()["paths"]
    for path in ("/v1/partners", "/v1/partners/{partner_id}", "/v1/partners/{partner_id}/suspend",
                 "/v1/partners/{partner_id}/reinstate", "/v1/partners/{partner_id}/feed",
                 "/v1/partners/{partner_id}/accreditation", "/v1/partners/{partner_id}/coverage",
                 "/v1/assignments/{project_id}", "/v1/caseloads"):
        assert path in paths


# --- the partner feeds job in the operations endpoints -------------------------------------------


class HeldFeed(PartnerFeed):
    """The partner feeds job, held inside each transaction until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.go = threading.Event()
        self.held = threading.Event()

    async def before_commit(self, count: int) -> None:
        self.held.set()
        while not self.go.is_set():
            await asyncio.sleep(0.05)


def test_the_partner_feed_shows_its_state_and_lag_in_readyz_and_metrics(make_settings):
    settings = make_settings("partners", ready_max_lag=10)
    dossier = uuid.uuid4()
    # 30 upstream records of one dossier (one partition); the job reads them 5 at a time.
    records = [record_from_state("intake", "TrainingRecorded", 1, dossier, n + 1,
                                 {"timestamp": datetime.now(timezone.utc), "course": "gestion", "hours": n,
                                  "completed_on": "2026-11-20"}, n)[1] for n in range(30)]
    asyncio.run(produce(settings.kafka_bootstrap_servers, settings.topic("intake.events"),
                        [(str(dossier).encode(), value) for value in records]))
    api = create_app(settings)
    runtime: Runtime = api.state.runtime
    feed = HeldFeed(runtime.app, settings, max_records=5)
    runtime.workers = [feed]
    service = f'service="partners",worker="{feed.name}"'

    with TestClient(api) as client:
        assert feed.held.wait(30), "the feed job never reached its first transaction"
        # Everything else is ready (the consumer read the 30 records): the feed job's lag holds it back.
        deadline = time.monotonic() + 30
        while (checks := client.get("/readyz").json()["checks"])["relay"] != "ok" or any(
                v != 0 for k, v in checks.items() if k.startswith("consumer_lag")):
            assert time.monotonic() < deadline, checks
            time.sleep(0.1)
        held = client.get("/readyz")
        assert held.status_code == 503, held.text
        assert (held.json()["checks"]["partner_feed"], held.json()["checks"]["partner_feed_lag"]) == ("ok", 25)
        metrics = client.get("/metrics").text
        assert f"passerelle_worker_running{{{service}}} 1" in metrics
        lags = [line for line in metrics.splitlines() if line.startswith("passerelle_worker_lag_records{")]
        assert [line.rsplit(" ", 1)[1] for line in lags if not line.endswith(" 0")] == ["25"], lags
        assert f"passerelle_worker_processed_total{{{service}}} 0" in metrics

        feed.go.set()  # it catches up: ready again under the bound, then nothing left to read
        done = f"passerelle_worker_processed_total{{{service}}} 30"
        deadline, metrics = time.monotonic() + 30, ""
        while (ready := client.get("/readyz")).status_code != 200 or ready.json()["checks"]["partner_feed_lag"] \
                or done not in (metrics := client.get("/metrics").text):
            assert time.monotonic() < deadline, (ready.text, metrics)
            time.sleep(0.1)
        assert f"passerelle_worker_published_total{{{service}}} 0" in metrics  # the dossier has no partners
    assert not feed.running
