"""The year after launch and the auditor through the console's pages, without a browser.

A stand-in plays followup's, audit's and partners' HTTP APIs as their OpenAPI documents describe them
(the routes the pages call), on top of the one of tests/unit/test_console_acts.py.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from console.services import Services
from console.sessions import COOKIE
from console.settings import ConsoleSettings
from tests.unit.test_console_acts import (
    ISSUER,
    OPERATOR,
    Programme,
    dossier,
    sign_in,
    text_of,
)

OTHER_OPERATOR = str(uuid.uuid4())


def followup(stage: str, **more: Any) -> dict[str, Any]:
    """What followup answers for GET /v1/followups/{id} (FollowUpDetail)."""
    return {"project_id": str(uuid.uuid4()), "stage": stage, "country": "SN", "local_operator_id": OPERATOR,
            "support_structure_id": str(uuid.uuid4()), "rule_version": "2026.1", "plan_rule_version": "2026.1",
            "opened_on": "2026-01-10", "launch": None, "plan": [], "visits": [], "conflicts": [], "open_alert": None,
            "alerts": [], "outcome": None, "survey": None, "version": 2, "timeline": [], **more}


def summary(f: dict[str, Any]) -> dict[str, Any]:
    """What followup lists (FollowUpSummary)."""
    return {"project_id": f["project_id"], "stage": f["stage"], "country": f["country"],
            "local_operator_id": f["local_operator_id"], "opened_on": f["opened_on"],
            "launched_on": (f["launch"] or {}).get("launched_on"),
            "visits_done": len(f["visits"]), "visits_overdue": sum(p["state"] == "overdue" for p in f["plan"]),
            "open_alert_id": (f["open_alert"] or {}).get("alert_id"), "conflicts": len(f["conflicts"]),
            "outcome": None}


LAUNCHED = {"launched_on": "2026-02-01", "legal_form": "GIE", "registration": "SN-THS-2026-B-118",
            "initial_jobs": 2, "own_contribution_cents": None}
PLAN = [{"number": 1, "month": 1, "due_on": "2026-03-01", "state": "done"},
        {"number": 2, "month": 3, "due_on": "2026-05-01", "state": "overdue"},
        {"number": 3, "month": 6, "due_on": "2099-08-01", "state": "planned"}]
VISIT = {"visit_id": "console:v1", "visit_number": 1, "month": 1, "due_on": "2026-03-01", "on_time": True,
         "visited_on": "2026-02-27", "business_status": "active", "jobs_paid": 2, "jobs_family": 1,
         "revenue_band": "150_to_500", "observations": "Boutique ouverte", "recommendations": ""}
VERIFICATION = {"ok": False, "services": {
    "funding": {"size": 42, "root": "ab", "events_seen": 42, "checkpoints_seen": 3, "unverified_events": 2,
                "verified_checkpoint": {"size": 40, "root": "cd", "record": "x"}, "waiting": None, "problems": []},
    "intake": {"size": 17, "root": "ef", "events_seen": 17, "checkpoints_seen": 0, "unverified_events": 17,
               "verified_checkpoint": None, "waiting": None,
               "problems": [{"kind": "modified", "sequence": 5, "detail": "raw words of the audit"}]}}}


class Field(Programme):
    """followup and audit besides intake, partners and funding."""

    def __init__(self) -> None:
        super().__init__()
        self.followups: dict[str, dict[str, Any]] = {}
        self.answer_to_visit = "logged"

    def follow(self, f: dict[str, Any]) -> dict[str, Any]:
        self.followups[f["project_id"]] = f
        return f

    def __call__(self, request: httpx.Request) -> httpx.Response:
        who = json.loads(request.headers["authorization"].removeprefix("Bearer "))
        host, path, method = request.url.host, request.url.path, request.method
        if host == "followup.test":
            self.calls.append(f"{method} {host}{path}")
            if method == "POST":
                if path in self.refuse:
                    status, problem = self.refuse[path]
                    return httpx.Response(status, json={"status": status, **problem})
                body = json.loads(request.content)
                self.posted.append((host, path, body))
                if path.endswith("/visits"):
                    status = {"logged": 201, "duplicate": 200, "conflict": 202}[self.answer_to_visit]
                    return httpx.Response(status, json={"project_id": path.split("/")[3], "stage": "launched",
                                                        "version": 3, "visit_id": body["visit_id"],
                                                        "result": self.answer_to_visit, "open_alert": None})
                return httpx.Response(200, json={"project_id": path.split("/")[3], "stage": "launched", "version": 3})
            mine = [f for f in self.followups.values()
                    if not who.get("partner_id") or f["local_operator_id"] == who["partner_id"]]
            if path == "/v1/followups":
                return httpx.Response(200, json={"items": [summary(f) for f in mine], "next_cursor": None})
            found = self.followups.get(path.rsplit("/", 1)[1])
            if found is None or found not in mine:
                return httpx.Response(404, json={"status": 404})
            return httpx.Response(200, json=found)
        if host == "audit.test" and path == "/v1/verification":
            self.calls.append(f"{method} {host}{path}")
            if set(who.get("roles", [])) & {"auditor", "admin"}:
                return httpx.Response(200, json=VERIFICATION)
            return httpx.Response(403, json={"status": 403})
        return super().__call__(request)


@pytest.fixture
def field() -> Field:
    return Field()


@pytest.fixture
def console(field: Field) -> TestClient:
    settings = ConsoleSettings(oidc_issuer=ISSUER, intake_url="http://intake.test",
                               partners_url="http://partners.test", funding_url="http://funding.test",
                               followup_url="http://followup.test", audit_url="http://audit.test")
    return TestClient(create_app(settings, Services(settings, transport=httpx.MockTransport(field))),
                      follow_redirects=False)


def as_role(client: TestClient, account: str, roles: list[str]) -> str:
    """A session for `account` whose token names its roles (the audit stand-in reads them); its CSRF token."""
    session = client.app.state.sessions.new("fr")
    session.user = {"sub": account, "name": account, "roles": roles, "partner_id": None}
    session.access_token = json.dumps({"sub": account, "roles": roles})
    session.id_token, session.expires_at = "id-token", time.time() + 600
    client.cookies.clear()
    client.cookies.set(COOKIE, session.id)
    return session.csrf


def acts_on(html: str) -> set[str]:
    return set(re.findall(r'action="/followups/[^/"]+/acts/([a-z_]+)"', html))


# --- the local operator -------------------------------------------------------------------------


def test_the_local_operator_launches_the_business_of_a_financed_dossier_of_theirs(console: TestClient,
                                                                                  field: Field) -> None:
    csrf = sign_in(console, "operator_sn")
    d = field.add(dossier("financed"))
    f = field.follow(followup("opened", project_id=d["id"]))
    assert f'href="/followups/{d["id"]}"' in console.get(f"/dossiers/{d['id']}").text
    page = console.get(f"/followups/{d['id']}")
    assert page.status_code == 200 and acts_on(page.text) == {"launch"}
    assert "Pas encore enregistré" in text_of(page.text)
    refused = console.post(f"/followups/{d['id']}/acts/launch", data={"csrf": csrf, "launched_on": "2026-02-01"})
    assert refused.status_code == 422 and "Indiquez la date du lancement" in refused.text and field.posted == []
    answer = console.post(f"/followups/{d['id']}/acts/launch", data={
        "csrf": csrf, "launched_on": "2026-02-01", "legal_form": "GIE", "registration": "SN-THS-2026-B-118",
        "initial_jobs": "2"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/followups/{d['id']}?done=launch"
    assert field.posted == [("followup.test", f"/v1/followups/{d['id']}/launch", {
        "launched_on": "2026-02-01", "legal_form": "GIE", "registration": "SN-THS-2026-B-118", "initial_jobs": 2})]
    f.update(stage="launched", launch=LAUNCHED, plan=PLAN)
    page = console.get(answer.headers["location"]).text
    assert "Le lancement de l'entreprise est enregistré" in text_of(page) and acts_on(page) == {"visit"}
    assert "Lancée le 1 févr. 2026" in text_of(page) and "En retard" in page


def test_the_local_operators_home_lists_their_follow_ups_overdue_first(console: TestClient, field: Field) -> None:
    sign_in(console, "operator_sn")
    field.follow(followup("launched", launch=LAUNCHED, plan=[PLAN[0]]))
    late = field.follow(followup("launched", launch=LAUNCHED, plan=PLAN))
    field.follow(followup("opened", local_operator_id=OTHER_OPERATOR))  # another operator's: never shown
    page = console.get("/")
    assert page.status_code == 200
    rows = re.findall(r'href="/followups/([^"]+)"', page.text)
    assert rows[0] == late["project_id"] and len(rows) == 2
    assert "1 avec des visites en retard" in text_of(page.text)
    # One call to followup for the list, whatever the number of follow-ups.
    assert [c for c in field.calls if "followup.test" in c] == ["GET followup.test/v1/followups"]


def test_a_visit_is_sent_with_the_id_its_form_was_given_and_the_answer_is_shown(console: TestClient,
                                                                                field: Field) -> None:
    csrf = sign_in(console, "operator_sn")
    f = field.follow(followup("launched", launch=LAUNCHED, plan=PLAN))
    page = console.get(f"/followups/{f['project_id']}").text
    visit_id = re.search(r'name="visit_id" value="([^"]+)"', page).group(1)
    assert visit_id.startswith("console:") and 'name="viewport"' in page
    form = {"csrf": csrf, "visit_id": visit_id, "visited_on": "2026-04-30", "business_status": "in_difficulty",
            "jobs_paid": "1", "jobs_family": "2", "revenue_band": "under_150", "observations": "Stock bas"}
    results = {}
    for answer_to_visit in ("logged", "duplicate", "conflict"):  # the same form sent again: the same visit id
        field.answer_to_visit = answer_to_visit
        answer = console.post(f"/followups/{f['project_id']}/acts/visit", data=form)
        assert answer.status_code == 303
        results[answer_to_visit] = text_of(console.get(answer.headers["location"]).text)
    assert [body["visit_id"] for _, _, body in field.posted] == [visit_id] * 3
    assert field.posted[0][2] == {"visit_id": visit_id, "visited_on": "2026-04-30", "business_status": "in_difficulty",
                                  "jobs": {"paid": 1, "family": 2}, "revenue_band": "under_150",
                                  "observations": "Stock bas", "recommendations": ""}
    assert "La visite est enregistrée." in results["logged"]
    assert "déjà enregistrée : rien n'a changé" in results["duplicate"]
    assert "Une autre version de cette visite est déjà enregistrée" in results["conflict"]
    # Another visit on the page next time: another id.
    assert visit_id not in console.get(f"/followups/{f['project_id']}").text


def test_a_visit_refused_keeps_what_was_typed_and_its_id(console: TestClient, field: Field) -> None:
    csrf = sign_in(console, "operator_sn")
    f = field.follow(followup("launched", launch=LAUNCHED, plan=PLAN))
    answer = console.post(f"/followups/{f['project_id']}/acts/visit", data={
        "csrf": csrf, "visit_id": "console:typed", "visited_on": "2026-04-30", "business_status": "active",
        "jobs_paid": "deux", "jobs_family": "0", "revenue_band": "none", "observations": "Noté sur place"})
    assert answer.status_code == 422 and field.posted == []
    assert "des nombres entiers" in text_of(answer.text) and 'aria-describedby="visit-error"' in answer.text
    assert 'value="console:typed"' in answer.text and "Noté sur place" in answer.text
    field.refuse[f"/v1/followups/{f['project_id']}/visits"] = (409, {"rule": "follow_up_is_open",
                                                                     "detail": "raw words"})
    answer = console.post(f"/followups/{f['project_id']}/acts/visit", data={
        "csrf": csrf, "visit_id": "console:typed", "visited_on": "2026-04-30", "business_status": "active",
        "jobs_paid": "2", "jobs_family": "0", "revenue_band": "none"})
    assert answer.status_code == 409 and "Ce suivi est terminé" in text_of(answer.text) and "raw words" not in answer.text
    assert console.post(f"/followups/{f['project_id']}/acts/visit", data={"csrf": "forged"}).status_code == 403


def test_another_operators_follow_up_is_not_found(console: TestClient, field: Field) -> None:
    sign_in(console, "operator_sn")
    f = field.follow(followup("launched", local_operator_id=OTHER_OPERATOR))
    assert console.get(f"/followups/{f['project_id']}").status_code == 404
    assert console.get("/followups/not-a-dossier").status_code == 404


# --- the follow-up officer -------------------------------------------------------------------------


def test_the_follow_up_officers_home_puts_open_alerts_and_overdue_visits_first(console: TestClient,
                                                                                field: Field) -> None:
    as_role(console, "followup_officer", ["followup_officer"])
    quiet = field.follow(followup("launched", launch=LAUNCHED, plan=[PLAN[0]]))
    late = field.follow(followup("launched", launch=LAUNCHED, plan=PLAN))
    alert = field.follow(followup("launched", launch=LAUNCHED, plan=[PLAN[0]], open_alert={
        "alert_id": "a1", "reason": "business_closed", "visit_id": "v"}))
    field.follow(followup("awaiting_funds"))  # no tranche paid yet: not a follow-up to watch
    page = console.get("/")
    rows = re.findall(r'href="/followups/([^"]+)"', page.text)
    assert rows == [alert["project_id"], late["project_id"], quiet["project_id"]]
    text = text_of(page.text)
    assert "1 avec une alerte ouverte" in text and "1 avec des visites en retard" in text
    assert "pas encore construites" not in page.text


def test_the_follow_up_page_shows_the_plan_visits_alerts_and_keeps_one_version(console: TestClient,
                                                                               field: Field) -> None:
    csrf = as_role(console, "followup_officer", ["followup_officer"])
    received = {**{k: VISIT[k] for k in ("visited_on", "business_status", "jobs_paid", "jobs_family",
                                         "revenue_band", "observations", "recommendations")},
                "business_status": "closed", "observations": "Rideau baissé"}
    f = field.follow(followup("launched", launch=LAUNCHED, plan=PLAN, visits=[VISIT], conflicts=[
        {"visit_id": "console:v1", "recorded": {k: VISIT[k] for k in received}, "received": [received]}],
        alerts=[{"alert_id": "a0", "reason": "business_in_difficulty", "visit_id": "x", "resolved_by_visit_id": "y"}]))
    page = console.get(f"/followups/{f['project_id']}")
    text = text_of(page.text)
    assert "Faite" in text and "En retard" in text and "Prévue" in text
    assert "État de l'entreprise En activité Fermée" in text  # the two versions side by side
    assert "Boutique ouverte Rideau baissé" in text
    assert "Entreprise en difficulté · levée par une visite suivante" in text
    assert acts_on(page.text) == {"visit", "resolve"}
    answer = console.post(f"/followups/{f['project_id']}/acts/resolve", data={
        "csrf": csrf, "visit_id": "console:v1", "keep": "received"})
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=resolve")
    assert field.posted == [("followup.test", f"/v1/followups/{f['project_id']}/visits/console:v1/resolution",
                             {"keep": "received"})]
    assert console.post(f"/followups/{f['project_id']}/acts/resolve", data={
        "csrf": csrf, "visit_id": "console:v1", "keep": "both"}).status_code == 422


def test_only_the_follow_up_officer_keeps_a_version(console: TestClient, field: Field) -> None:
    sign_in(console, "operator_sn")
    f = field.follow(followup("launched", launch=LAUNCHED, conflicts=[
        {"visit_id": "v", "recorded": VISIT, "received": [VISIT]}]))
    assert acts_on(console.get(f"/followups/{f['project_id']}").text) == {"visit"}


# --- the auditor ---------------------------------------------------------------------------------


def test_the_auditors_home_is_the_verification_of_every_log(console: TestClient, field: Field) -> None:
    as_role(console, "auditor", ["auditor"])
    page = console.get("/")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Des problèmes sont trouvés dans les journaux" in text
    assert "Financement 42 40 événements 2 Aucun" in text
    assert "Accueil (intake) 17 Aucun encore 17 Un événement a été modifié · à la place 5" in text
    assert "raw words of the audit" not in text and "pas encore construites" not in page.text
    assert [c for c in field.calls if "audit.test" in c] == ["GET audit.test/v1/verification"]
