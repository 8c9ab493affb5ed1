"""The followup service on real PostgreSQL and Kafka.

Upstream facts (intake's, partners' and funding's events) are records this test
produces on their topics, as those services' relays make them (the kernel's
envelope); followup's own events are read back from `followup.events` as
funding reads them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from fastapi.testclient import TestClient

from services.followup.application import FollowupApplication
from services.followup.domain import VisitReport
from services.followup.main import build, create_app
from shared.store import CommandContext, acting
from shared.envelope import CloudEvent, record_from_state
from tests.conftest import bearer
from tests.integration.kafka_tools import read_all

pytestmark = pytest.mark.integration

OPERATOR = str(uuid.uuid4())
OTHER_OPERATOR = str(uuid.uuid4())
PAID_AT = datetime(2026, 1, 10, 9, 0, tzinfo=timezone.utc)


class Clock:
    """The service's day, moved by the test."""

    def __init__(self, today: date):
        self.day = today

    def __call__(self) -> date:
        return self.day


def upstream(service: str, name: str, subject: str, aggregate_version: int, at: datetime, sequence: int,
             data: dict[str, Any]) -> tuple[bytes, bytes]:
    """A record as `service`'s relay publishes it: key and CloudEvent value."""
    state = {"timestamp": at, "_meta": {"actor": f"service:{service}", "codeversion": "test"}, **data}
    _, value = record_from_state(service, name, 1, subject, aggregate_version, state, sequence)
    return subject.encode(), value


class Service:
    def __init__(self, client: TestClient, settings: Any, clock: Clock):
        self.client, self.settings, self.clock = client, settings, clock
        self.runtime = client.app.state.runtime  # type: ignore[attr-defined]
        self.app = self.runtime.app
        self.officer = bearer(settings, "followup_officer", sub="fiona")
        self.operator = bearer(settings, "partner", partner_id=OPERATOR)
        self.sequence = {"intake": 0, "partners": 0, "funding": 0}
        self.rules_published = False

    def publish(self, *records: tuple[str, str, str, int, datetime, dict[str, Any]]) -> None:
        """Produce (service, event name, subject, aggregate version, time, data) records, in order,
        then wait until the service's consumer has taken each of them in (its tracking reached them)."""
        by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
        for service, name, subject, version, at, data in records:
            by_topic.setdefault(service, []).append(upstream(service, name, subject, version, at,
                                                             self.sequence[service], data))
            self.sequence[service] += 1

        async def send() -> dict[tuple[str, int], int]:
            last: dict[tuple[str, int], int] = {}
            producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_servers,
                                        enable_idempotence=True)
            await producer.start()
            try:
                for service, batch in by_topic.items():
                    topic = self.settings.topic(f"{service}.events")
                    for key, value in batch:
                        sent = await producer.send_and_wait(topic, value=value, key=key)
                        last[(topic, sent.partition)] = sent.offset
            finally:
                await producer.stop()
            return last

        # Consumed: the consumer's tracking (in the store) has reached each record.
        for (topic, partition), offset in asyncio.run(send()).items():
            name = f"{topic}:{partition}"
            self.wait(lambda name=name, offset=offset: self._tracked(name, offset))

    def _tracked(self, name: str, offset: int) -> bool:
        position = self.app.tracking_position(name)
        return position is not None and position >= offset

    def financed_dossier(self, operator: str = OPERATOR, country: str = "SN", support: str | None = None) -> str:
        """A dossier submitted, assigned, sent to committee, approved and paid its first tranche.

        Topics are read side by side in no set order between them: the facts that come before
        the payment are published (and consumed) first, as they happen days or months apart.
        """
        project_id = str(uuid.uuid4())
        if not self.rules_published:
            self.publish(("funding", "ProgrammeRulesPublished", str(uuid.uuid4()), 2, PAID_AT - timedelta(days=400),
                          {"version": "2026-1", "return_aid": {}, "min_planned_jobs": 1,
                           "countries": {c: {"in_programme": True, "visit_months": [1, 3, 6]} for c in ("SN", "ML")}}))
            self.rules_published = True
        self.publish(
            ("intake", "ProjectSubmitted", project_id, 1, PAID_AT - timedelta(days=300), {
                "reference": "PAS-2025-X", "person_id": str(uuid.uuid4()), "promoter_ciphertext": "...",
                "country": country, "french_region": "FR-IDF", "sector": "trade", "title": "Boutique",
                "description": "", "requested_amount_cents": 500_000, "own_contribution_cents": 100_000,
                "planned_jobs": 3}),
            ("intake", "ProjectSentToCommittee", project_id, 8, PAID_AT - timedelta(days=60), {
                "requested_amount_cents": 500_000, "own_contribution_cents": 120_000, "planned_jobs": 3}),
            ("partners", "PartnersAssigned", project_id, 2, PAID_AT - timedelta(days=290), {
                "project_id": project_id, "support_structure_id": support or str(uuid.uuid4()),
                "local_operator_id": operator,
                "sector_matched": True}),
        )
        self.publish(
            ("funding", "FinancingApproved", project_id, 4, PAID_AT - timedelta(days=30), {
                "amount_cents": 500_000, "approved_by": "user:bob", "proposed_by": "user:ann",
                "justification": "ok", "rule_version": "2026-1", "envelope_id": str(uuid.uuid4()),
                "dossier_version": 8, "code_version": "t"}),
            ("funding", "FundsDisbursed", project_id, 7, PAID_AT, {
                "tranche": 1, "amount_cents": 250_000, "payee": "Thiès Conseil", "payment_reference": "VIR-1",
                "envelope_id": str(uuid.uuid4())}),
        )
        assert self.client.get(f"/v1/followups/{project_id}", headers=self.officer).status_code == 200
        return project_id

    def wait(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the service did not get there in time"
            time.sleep(0.1)

    def written(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def get(self, project_id: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(f"/v1/followups/{project_id}", headers=headers or self.officer)

    def post(self, project_id: str, what: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return self.client.post(f"/v1/followups/{project_id}/{what}", json=body, headers=headers or self.operator)

    def launch(self, project_id: str, on: str = "2026-02-01") -> None:
        response = self.post(project_id, "launch", {"launched_on": on, "legal_form": "sole trader",
                                                    "registration": "SN-THS-2026-B-1", "initial_jobs": 1,
                                                    "own_contribution_cents": 110_000})
        assert response.status_code == 200, response.text

    def indicators(self, **params: Any) -> dict[str, Any]:
        self.runtime.projector.catch_up()
        response = self.client.get("/v1/indicators", params=params, headers=self.officer)
        assert response.status_code == 200, response.text
        return response.json()


def visit(visit_id: str, on: str, status: str = "active", paid: int = 2, family: int = 1,
          **extra: Any) -> dict[str, Any]:
    return {"visit_id": visit_id, "visited_on": on, "business_status": status,
            "jobs": {"paid": paid, "family": family}, "revenue_band": "150_to_500",
            "observations": "Boutique ouverte, stock correct.", "recommendations": "Tenir un cahier de caisse.",
            **extra}


@pytest.fixture
def service(make_settings):
    settings = make_settings("followup")
    clock = Clock(date(2026, 2, 2))
    api = create_app(settings)
    api.state.runtime.app.today = clock
    with TestClient(api) as client:
        yield Service(client, settings, clock)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def followup_events(service: Service, expect: int) -> list[CloudEvent]:
    records = asyncio.run(read_all(service.settings.kafka_bootstrap_servers,
                                   service.settings.topic("followup.events"), expect))
    return sorted((CloudEvent.parse(r.value) for r in records), key=lambda e: e.sequence)


# --- the whole year ---------------------------------------------------------------------------


def test_a_financed_dossier_is_followed_to_its_outcome_and_its_alerts_reach_kafka(service):
    project_id = service.financed_dossier()
    opened = service.get(project_id).json()
    assert opened["stage"] == "opened" and opened["local_operator_id"] == OPERATOR and opened["country"] == "SN"
    assert (opened["rule_version"], opened["plan_rule_version"]) == ("2026-1", "2026-1")
    assert [(p["month"], p["due_on"]) for p in opened["plan"]] == [
        (1, "2026-02-10"), (3, "2026-04-10"), (6, "2026-07-10")]

    service.launch(project_id, "2026-02-01")
    launched = service.get(project_id).json()
    assert [p["due_on"] for p in launched["plan"]] == ["2026-03-01", "2026-05-01", "2026-08-01"]
    assert launched["launch"]["legal_form"] == "sole trader"

    service.clock.day = date(2026, 3, 3)
    first = service.post(project_id, "visits", visit("tablet-1:1", "2026-03-01"))
    assert first.status_code == 201 and first.json()["result"] == "logged"

    service.clock.day = date(2026, 5, 2)
    trouble = service.post(project_id, "visits", visit("tablet-1:2", "2026-05-01", "in_difficulty", paid=1))
    assert trouble.status_code == 201, trouble.text
    alert = trouble.json()["open_alert"]
    assert alert == {"alert_id": alert["alert_id"], "visit_id": "tablet-1:2"}, "the partner feed shares no reason"
    assert service.get(project_id).json()["open_alert"]["reason"] == "business_in_difficulty"

    service.clock.day = date(2026, 8, 1)
    last = service.post(project_id, "visits", visit("tablet-1:3", "2026-08-01", paid=3, family=1))
    assert last.status_code == 201 and last.json()["open_alert"] is None and last.json()["stage"] == "completed"

    done = service.get(project_id).json()
    assert done["outcome"] == {"completed_on": "2026-08-01", "outcome": "business_active", "jobs_created": 4,
                               "visits_done": 3, "visits_planned": 3}
    assert [p["state"] for p in done["plan"]] == ["done", "done", "done"]
    assert done["alerts"] == [{"alert_id": alert["alert_id"], "reason": "business_in_difficulty",
                               "visit_id": "tablet-1:2", "resolved_by_visit_id": "tablet-1:3"}]
    types = [t["type"] for t in done["timeline"]]
    # Intake's and partners' topics are read side by side: their facts come in either order.
    assert sorted(types[1:4]) == ["CommitteeNoted", "LocalOperatorNoted", "SubmissionNoted"]
    assert types[:1] + types[4:] == [
        "DossierNoted", "FinancingNoted", "FollowUpOpened", "BusinessLaunched", "FollowUpVisitLogged", "FollowUpVisitLogged", "AlertRaised",
        "FollowUpVisitLogged", "AlertResolved", "FollowUpCompleted"]
    # The human who logged it acts, for the partner organisation recorded beside them.
    assert done["timeline"][6]["actor"].startswith(f"user:{service.settings.jwt_issuer}#")
    assert done["timeline"][6]["partner_id"] == OPERATOR

    # What funding reads: keyed and subjected by the dossier, alert ids matching, every event naming the dossier.
    events = [e for e in followup_events(service, 15) if e.subject == project_id]
    assert all(e.data["project_id"] == project_id for e in events)
    raised = next(e for e in events if e.name == "AlertRaised")
    resolved = next(e for e in events if e.name == "AlertResolved")
    assert raised.type == "passerelle.followup.AlertRaised.v1"
    assert raised.data == {"project_id": project_id, "alert_id": alert["alert_id"],
                           "reason": "business_in_difficulty", "visit_id": "tablet-1:2",
                           "local_operator_id": OPERATOR}
    assert resolved.data == {"project_id": project_id, "alert_id": alert["alert_id"], "visit_id": "tablet-1:3"}
    assert raised.sequence < resolved.sequence
    assert next(e for e in events if e.name == "FollowUpCompleted").data["jobs_created"] == 4


def test_a_redelivered_or_later_tranche_opens_nothing_more(service):
    project_id = service.financed_dossier()
    before = service.written()
    paid = {"tranche": 1, "amount_cents": 250_000, "payee": "Thiès Conseil", "payment_reference": "VIR-1",
            "envelope_id": "e"}
    service.publish(("funding", "FundsDisbursed", project_id, 7, PAID_AT, paid),
                    ("funding", "FundsDisbursed", project_id, 9, PAID_AT + timedelta(days=90),
                     {**paid, "tranche": 2, "amount_cents": 150_000, "payment_reference": "VIR-2"}))
    assert service.written() == before


# --- who may do what ---------------------------------------------------------------------------


def test_a_partner_records_only_on_the_dossiers_it_follows(service):
    support = str(uuid.uuid4())
    mine = service.financed_dossier(support=support)
    theirs = service.financed_dossier(operator=OTHER_OPERATOR)
    before = service.written()
    # Another partner's follow-up is 404, as one that does not exist: nothing tells it exists.
    refused = assert_problem(service.post(theirs, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE",
                                                             "registration": "R"}), 404)
    assert refused["status"] == 404
    assert_problem(service.post(theirs, "visits", visit("x", "2026-02-01")), 404)
    assert_problem(service.get(theirs, headers=service.operator), 404)
    nobody = bearer(service.settings, "partner")  # a partner token without partner id
    assert_problem(service.post(mine, "visits", visit("x", "2026-02-01"), headers=nobody), 404)
    # The dossier's support structure does not do the local operator's work.
    structure = bearer(service.settings, "partner", partner_id=support)
    assert_problem(service.post(mine, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE",
                                                 "registration": "R"}, headers=structure), 403)
    assert_problem(service.post(mine, "visits", visit("x", "2026-02-01"), headers=structure), 403)
    assert_problem(service.post(mine, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE",
                                                 "registration": "R"}, headers=bearer(service.settings, "auditor")),
                   403)
    # Only an officer resolves conflicts or ends a follow-up early.
    assert_problem(service.post(mine, "complete", {"outcome": "abandoned", "completed_on": "2026-02-01"}), 403)
    assert service.written() == before

    service.launch(mine)  # the dossier's own local operator may
    read = service.get(mine, headers=service.operator)
    assert read.status_code == 200 and all("actor" not in t for t in read.json()["timeline"])
    assert_problem(service.get(mine, headers=structure), 403)
    listed = service.client.get("/v1/followups", headers=service.operator).json()["items"]
    assert [f["project_id"] for f in listed] == [mine]
    # An officer launches any dossier.
    other = service.post(theirs, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE", "registration": "R"},
                         headers=service.officer)
    assert other.status_code == 200, other.text


def test_a_partner_reads_of_a_follow_up_what_its_feed_shares(service):
    project_id = service.financed_dossier()
    service.launch(project_id)
    service.clock.day = date(2026, 3, 20)
    trouble = visit("phone-1:1", "2026-03-01", status="in_difficulty")
    answer = service.post(project_id, "visits", trouble)
    assert answer.status_code == 201 and answer.json()["open_alert"] == {
        "alert_id": answer.json()["open_alert"]["alert_id"], "visit_id": "phone-1:1"}, "no reason for the partner"
    assert service.post(project_id, "visits", {**trouble, "observations": "Version de l'agent"},
                        headers=service.officer).status_code == 202

    staff = service.get(project_id).json()
    assert staff["visits"][0]["observations"] and staff["conflicts"] and staff["open_alert"]["reason"]
    assert staff["launch"]["registration"] and any("actor" in t for t in staff["timeline"])
    read = service.get(project_id, headers=service.operator)
    assert read.status_code == 200
    shown = read.json()
    assert set(shown["visits"][0]) == {"visit_id", "visit_number", "month", "due_on", "on_time", "visited_on",
                                       "business_status", "jobs_paid", "jobs_family", "revenue_band"}
    assert shown["conflicts"] == [], "the versions an officer settles are not shared"
    assert set(shown["open_alert"]) == {"alert_id", "visit_id"}
    assert set(shown["alerts"][0]) == {"alert_id", "visit_id", "resolved_by_visit_id"}
    assert set(shown["launch"]) == {"launched_on", "legal_form", "initial_jobs"}
    assert "fiona" not in read.text and "Version de l'agent" not in read.text and "cahier" not in read.text


# --- offline visits ----------------------------------------------------------------------------


def test_an_offline_visit_sent_twice_is_recorded_once_and_two_versions_make_a_conflict(service):
    project_id = service.financed_dossier()
    service.launch(project_id)
    service.clock.day = date(2026, 3, 20)  # the device comes back online weeks later
    body = visit("phone-3:17", "2026-03-01")
    assert service.post(project_id, "visits", body).status_code == 201
    written = service.written()
    again = service.post(project_id, "visits", body)
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    assert service.written() == written

    # Without a device id the service gives one: the visit is a new one each time.
    online = {k: v for k, v in visit("-", "2026-03-15").items() if k != "visit_id"}
    given = service.post(project_id, "visits", online)
    assert given.status_code == 201 and given.json()["visit_id"].startswith("service:")
    written = service.written()

    other = service.post(project_id, "visits", {**body, "jobs": {"paid": 5, "family": 1}})
    assert other.status_code == 202 and other.json()["result"] == "conflict"
    shown = service.get(project_id).json()
    assert shown["visits"][0]["jobs_paid"] == 2  # never silently overwritten
    assert shown["conflicts"] == [{"visit_id": "phone-3:17",
                                   "recorded": {k: shown["visits"][0][k] for k in (
                                       "visited_on", "business_status", "jobs_paid", "jobs_family",
                                       "revenue_band", "observations", "recommendations")},
                                   "received": [{**shown["conflicts"][0]["received"][0], "jobs_paid": 5}]}]
    assert service.post(project_id, "visits", {**body, "jobs": {"paid": 5, "family": 1}}).status_code == 200
    service.runtime.projector.catch_up()
    assert service.client.get("/v1/followups", headers=service.officer).json()["items"][0]["conflicts"] == 1

    assert_problem(service.post(project_id, "visits/phone-3:17/resolution", {"keep": "received"}), 403)
    resolved = service.post(project_id, "visits/phone-3:17/resolution", {"keep": "received"},
                            headers=service.officer)
    assert resolved.status_code == 200, resolved.text
    shown = service.get(project_id).json()
    assert shown["conflicts"] == [] and shown["visits"][0]["jobs_paid"] == 5
    assert_problem(service.post(project_id, "visits/phone-3:17/resolution", {"keep": "received"},
                                headers=service.officer), 409)


# --- the overdue scheduler ---------------------------------------------------------------------


def test_the_scheduler_restarted_around_a_due_date_flags_one_overdue_visit(service, make_settings):
    project_id = service.financed_dossier()
    service.launch(project_id, "2026-02-01")  # first visit due 2026-03-01
    app = service.app

    service.clock.day = date(2026, 3, 1)
    assert app.flag_overdue_visits() == 0  # due today: not late yet
    service.clock.day = date(2026, 3, 2)
    assert app.flag_overdue_visits() == 1
    assert app.flag_overdue_visits() == 0

    # A second process of the service, started afterwards (a restart), with its own clock.
    restarted = build(service.settings)
    restarted.app.today = Clock(date(2026, 3, 5))
    try:
        assert restarted.app.flag_overdue_visits() == 0
        # The second visit falls due while both run: each flags what it finds, together once.
        service.clock.day = restarted.app.today.day = date(2026, 5, 2)
        assert restarted.app.flag_overdue_visits() + app.flag_overdue_visits() == 1
    finally:
        restarted.app.close()

    shown = service.get(project_id).json()
    assert [p["state"] for p in shown["plan"]] == ["overdue", "overdue", "planned"]
    overdue = [t for t in shown["timeline"] if t["type"] == "FollowUpVisitOverdue"]
    assert len(overdue) == 2 and all(t["actor"] == "service:followup" for t in overdue)
    events = [e for e in followup_events(service, 11) if e.name == "FollowUpVisitOverdue"]
    assert [(e.data["visit_number"], e.data["due_on"]) for e in events] == [(1, "2026-03-01"), (2, "2026-05-01")]


def test_a_scheduler_down_across_a_due_date_flags_it_when_it_runs_again(service):
    project_id = service.financed_dossier()
    service.launch(project_id, "2026-02-01")
    service.clock.day = date(2026, 6, 15)  # nothing ran since the launch: two visits are late
    assert service.app.flag_overdue_visits() == 2
    assert service.app.flag_overdue_visits() == 0


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("what, body", [
    ("visits", visit("v", "2026-13-01")),
    ("visits", visit("v", "2026-02-01", status="thriving")),
    ("visits", visit("v", "2026-02-01", paid=-1)),
    ("visits", visit("v", "2026-02-01", paid="2")),
    ("visits", visit("v has spaces", "2026-02-01")),
    ("visits", {**visit("v", "2026-02-01"), "revenue_band": "a lot"}),
    ("visits", {**visit("v", "2026-02-01"), "unexpected": 1}),
    ("visits", {"visited_on": "2026-02-01"}),
    ("visits", visit("v", "2026-01-15")),  # before the launch
    ("visits", visit("v", "2027-01-01")),  # in the future
    ("launch", {"launched_on": "2026-02-01", "legal_form": "", "registration": "R"}),
    ("launch", {"launched_on": "tomorrow", "legal_form": "GIE", "registration": "R"}),
    ("survey", {"surveyed_on": "2026-02-01", "business_status": "active", "jobs": {"paid": 1},
                "revenue_band": "none"}),
])
def test_bad_input_is_422_problem_json_and_writes_nothing(service, what, body):
    project_id = service.financed_dossier()
    if what == "visits":
        service.launch(project_id)
    before = service.written()
    assert_problem(service.post(project_id, what, body), 422)
    assert service.written() == before


def test_broken_rules_are_409_and_unknown_dossiers_404(service):
    project_id = service.financed_dossier()
    before = service.written()
    early = assert_problem(service.post(project_id, "visits", visit("v", "2026-02-01")), 409)
    assert early["rule"] == "visits_after_launch"
    assert_problem(service.post(str(uuid.uuid4()), "visits", visit("v", "2026-02-01"), headers=service.officer),
                   404)
    assert_problem(service.get(str(uuid.uuid4())), 404)
    assert_problem(service.client.get("/v1/indicators", params={"as_of": "2026-01-01T00:00:00"},
                                      headers=service.officer), 422)  # a moment needs its offset
    assert_problem(service.client.get("/v1/indicators", params={"country": "sn"}, headers=service.officer), 422)
    assert service.written() == before
    service.launch(project_id)
    assert assert_problem(service.post(project_id, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE",
                                                              "registration": "R"}), 409)["rule"] == "launch_once"


def test_concurrent_visits_on_one_follow_up_are_all_logged(service):
    """Eight visits to one follow-up at once, from three "processes": the service over HTTP and
    two more applications on the same store, as API processes beside each other would be. Each
    command that loses the store's optimistic-concurrency race loads the follow-up again and
    decides again (the next planned visit, alerts): none is refused, none is lost."""
    service.publish(("funding", "ProgrammeRulesPublished", str(uuid.uuid4()), 2, PAID_AT - timedelta(days=400),
                     {"version": "2026-1", "return_aid": {}, "min_planned_jobs": 1,
                      "countries": {"SN": {"in_programme": True, "visit_months": list(range(1, 13))}}}))
    service.rules_published = True
    project_id = service.financed_dossier()
    service.launch(project_id, "2026-02-01")
    others = [FollowupApplication(service.settings, today=service.clock) for _ in range(2)]
    count = 8
    start = threading.Barrier(count)
    outcomes: dict[str, Any] = {}

    def over_http(n: int) -> None:
        start.wait()
        r = service.post(project_id, "visits", visit(f"tablet-{n}:1", "2026-02-02"))
        outcomes[f"tablet-{n}:1"] = r.json().get("result") if r.status_code == 201 else (r.status_code, r.text)

    def in_process(app: FollowupApplication, n: int) -> None:
        report = VisitReport.checked(date(2026, 2, 2), "active", 2, 1, "150_to_500", "ok", "")
        start.wait()
        try:
            with acting(CommandContext(actor=f"partner:{OPERATOR}")):
                outcomes[f"tablet-{n}:1"] = app.log_visit(uuid.UUID(project_id), f"tablet-{n}:1", report)[1]
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcomes[f"tablet-{n}:1"] = repr(exc)

    threads = [threading.Thread(target=over_http, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=in_process, args=(others[n % 2], n)) for n in range(3, count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for app in others:
            app.close()
    assert outcomes == {f"tablet-{n}:1": "logged" for n in range(count)}, outcomes
    shown = service.get(project_id).json()
    assert sorted(v["visit_id"] for v in shown["visits"]) == sorted(outcomes)
    # Each took the next planned visit in turn: the first eight months, once each.
    assert sorted(v["visit_number"] for v in shown["visits"]) == list(range(1, count + 1))
    assert [p["state"] for p in shown["plan"]][count:] == ["planned"] * (12 - count) and shown["stage"] != "completed"


def test_concurrent_launches_launch_once_and_the_others_are_refused_by_the_rule(service):
    """The losers of the race load the launched follow-up again: the rule refuses them (409 naming
    `launch_once`), not the store (a bare concurrent-modification 409)."""
    project_id = service.financed_dossier()
    start = threading.Barrier(4)
    answers: list[tuple[int, Any]] = []

    def launch(n: int) -> None:
        start.wait()
        r = service.post(project_id, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE",
                                                "registration": f"R-{n}", "initial_jobs": 1})
        answers.append((r.status_code, r.json().get("rule") if r.status_code == 409 else r.json().get("stage")))

    threads = [threading.Thread(target=launch, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers, key=str) == [(200, "launched")] + [(409, "launch_once")] * 3, answers
    assert [t["type"] for t in service.get(project_id).json()["timeline"]].count("BusinessLaunched") == 1


def test_the_same_idempotency_key_replays_the_first_answer(service):
    project_id = service.financed_dossier()
    headers = {**service.operator, "Idempotency-Key": "launch-1"}
    body = {"launched_on": "2026-02-01", "legal_form": "GIE", "registration": "R"}
    first = service.post(project_id, "launch", body, headers=headers)
    written = service.written()
    again = service.post(project_id, "launch", body, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert service.written() == written


# --- indicators --------------------------------------------------------------------------------


def test_indicators_now_and_as_they_stood_then(service):
    senegal = service.financed_dossier(country="SN")
    mali = service.financed_dossier(operator=OTHER_OPERATOR, country="ML")
    for project_id in (senegal, mali):
        service.launch(project_id, "2026-02-01") if project_id == senegal else service.post(
            mali, "launch", {"launched_on": "2026-02-01", "legal_form": "GIE", "registration": "R",
                             "own_contribution_cents": 50_000}, headers=service.officer)
    service.clock.day = date(2026, 3, 2)
    service.post(senegal, "visits", visit("s1", "2026-03-01", "closed", paid=0, family=0))
    service.runtime.projector.catch_up()
    between = datetime.now(timezone.utc)
    time.sleep(0.01)
    service.clock.day = date(2026, 5, 1)
    service.post(senegal, "visits", visit("s2", "2026-05-01", "active", paid=2, family=1))

    now = service.indicators()
    assert now["dossiers_followed"] == 2 and now["alerts_open"] == 0
    assert now["own_contribution"]["put_in_cents"] == 160_000
    assert now["days_submission_to_committee"] == {"dossiers": 2, "mean": 240.0, "median": 240.0}
    assert now["days_committee_to_first_tranche"] == {"dossiers": 2, "mean": 60.0, "median": 60.0}
    assert service.indicators(country="SN")["dossiers_followed"] == 1
    assert service.indicators(partner_id=OTHER_OPERATOR)["dossiers_followed"] == 1
    assert service.indicators(year=2026)["dossiers_followed"] == 2
    assert service.indicators(year=2025)["dossiers_followed"] == 0

    then = service.indicators(as_of=between.isoformat())
    assert then["alerts_open"] == 1 and then["visits"]["done"] == 1
    before_all = service.indicators(as_of="2020-01-01T00:00:00Z")
    assert before_all["dossiers_followed"] == 0

    # A partner gets its own dossiers' indicators, whatever it asks for.
    mine = service.client.get("/v1/indicators", params={"partner_id": OTHER_OPERATOR},
                              headers=service.operator).json()
    assert mine["dossiers_followed"] == 1 and mine["partner_id"] == OPERATOR


def test_rebuilding_the_read_models_gives_the_same_rows(service):
    from services.followup.projections import facts, followups, planned_visits

    project_id = service.financed_dossier()
    service.launch(project_id)
    service.clock.day = date(2026, 3, 5)
    service.post(project_id, "visits", visit("v1", "2026-03-01", "in_difficulty"))
    service.app.flag_overdue_visits()
    service.runtime.projector.catch_up()

    def rows() -> dict[str, list[Any]]:
        with service.runtime.projector.engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(t.select()))
                    for t in (followups, planned_visits, facts)}

    before = rows()
    admin = bearer(service.settings, "admin")
    for name in ("followups_v1", "followup_facts_v1"):
        assert service.client.post(f"/v1/admin/projections/{name}/rebuild", headers=admin).status_code == 200
    assert rows() == before
    assert json.loads(before["followup_facts_v1"][-1][4])["project_id"] == project_id
