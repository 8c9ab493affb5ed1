"""The dossier's acts through the console's pages, by whose job each is, without a browser.

A small stand-in plays intake's, partners' and funding's HTTP APIs as their OpenAPI documents
describe them (the routes the pages call); a session is opened directly in the console's store.
The browser test (tests/e2e/test_console_browser.py) runs the real services.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from html import unescape
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from console.services import Services
from console.sessions import COOKIE
from console.settings import ConsoleSettings

ISSUER = "http://127.0.0.1:9"
SUPPORT, OPERATOR = str(uuid.uuid4()), str(uuid.uuid4())
ENVELOPE = str(uuid.uuid4())
OTHER_PERSON = str(uuid.uuid4())


def dossier(status: str, **more: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "reference": "PAS-2026-0007", "status": status, "version": 5,
            "person_id": str(uuid.uuid4()), "promoter": {"given_name": "Awa", "family_name": "Diop"},
            "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique à Thiès",
            "description": "", "requested_amount_cents": 550_000, "own_contribution_cents": 120_000,
            "planned_jobs": 3, "support_structure_id": SUPPORT, "local_operator_id": OPERATOR,
            "eligibility": {"eligible": True, "reasons": [], "rule_version": "2026.1"},
            "possible_duplicates": [], "duplicate_reviews": [], "consent": {"purposes": ["funding"], "partners": []},
            "skills_review": None, "trainings": [], "business_plan": None, "feasibility_conclusion": None,
            "feasibility_grant": None, "financing": None, "closure_reason": None,
            "submitted_at": "2026-12-04T10:05:00+00:00",
            "timeline": [{"type": "ProjectSubmitted", "version": 1, "at": "2026-12-04T10:05:00+00:00",
                          "actor": f"user:{ISSUER}#intake_officer"}], **more}


def for_partner(d: dict[str, Any]) -> dict[str, Any]:
    """What intake answers a partner: ProjectForPartner (no person, no promoter, no title, no who)."""
    keep = ("id", "status", "version", "country", "french_region", "sector", "requested_amount_cents",
            "own_contribution_cents", "planned_jobs", "support_structure_id", "local_operator_id",
            "feasibility_conclusion")
    return {**{k: d[k] for k in keep}, "eligible": True, "skills_review_done": d["skills_review"] is not None,
            "trainings": d["trainings"], "feasibility_grant_amount_cents": None, "financing_decision": None,
            "timeline": [{k: e[k] for k in ("type", "version", "at")} for e in d["timeline"]]}


class Programme:
    """intake, partners and funding, each on its own address, answering each person's token."""

    def __init__(self) -> None:
        self.dossiers: dict[str, dict[str, Any]] = {}
        self.financing: dict[str, dict[str, Any]] = {}
        self.ledger: list[dict[str, Any]] = []
        self.posted: list[tuple[str, str, Any]] = []
        self.refuse: dict[str, tuple[int, dict[str, Any]]] = {}  # path -> the answer to a POST there
        self.calls: list[str] = []
        self.as_of: str | None = None
        self.ledger_page = 500

    def add(self, d: dict[str, Any]) -> dict[str, Any]:
        self.dossiers[d["id"]] = d
        return d

    def __call__(self, request: httpx.Request) -> httpx.Response:
        who = json.loads(request.headers["authorization"].removeprefix("Bearer "))
        host, path, method = request.url.host, request.url.path, request.method
        self.calls.append(f"{method} {host}{path}")
        if method == "POST":
            body = json.loads(request.content) if request.content else None
            if path in self.refuse:
                status, problem = self.refuse[path]
                return httpx.Response(status, json={"status": status, **problem})
            self.posted.append((host, path, body))
            return httpx.Response(200, json={"id": path.split("/")[3], "status": "x", "version": 6})
        if host == "intake.test" and path == "/v1/projects":
            items = list(self.dossiers.values())
            if who.get("partner_id"):
                items = [for_partner(d) for d in items if who["partner_id"] in (d["support_structure_id"],
                                                                               d["local_operator_id"])]
            status = request.url.params.get("status")
            items = [d for d in items if not status or d["status"] == status]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        if host == "intake.test" and path.startswith("/v1/projects/"):
            d = self.dossiers.get(path.rsplit("/", 1)[1])
            if d is None:
                return httpx.Response(404, json={"status": 404})
            if who.get("partner_id"):
                if who["partner_id"] not in (d["support_structure_id"], d["local_operator_id"]):
                    return httpx.Response(403, json={"status": 403})
                return httpx.Response(200, json=for_partner(d))
            return httpx.Response(200, json=d)
        if host == "partners.test" and path.startswith("/v1/partners/"):
            pid = path.rsplit("/", 1)[1]
            if who.get("partner_id") and who["partner_id"] != pid:  # a partner reads only itself
                return httpx.Response(403, json={"status": 403})
            kind = "support_structure" if pid == SUPPORT else "local_operator"
            name = "Île-de-France Entreprendre Solidaire" if pid == SUPPORT else "Thiès Conseil"
            return httpx.Response(200, json={"id": pid, "name": name, "kind": kind})
        if host == "funding.test" and path.startswith("/v1/financing/"):
            found = self.financing.get(path.rsplit("/", 1)[1])
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={"status": 404})
        if host == "funding.test" and path == "/v1/envelopes":
            return httpx.Response(200, json=[
                {"id": ENVELOPE, "purpose": "business_creation", "year": 2026, "country": "SN",
                 "allocated_cents": 10_000_000, "reserved_cents": 0, "disbursed_cents": 0,
                 "available_cents": 10_000_000, "version": 1},
                {"id": str(uuid.uuid4()), "purpose": "business_creation", "year": 2026, "country": "ML",
                 "allocated_cents": 1, "reserved_cents": 0, "disbursed_cents": 0, "available_cents": 1, "version": 1}])
        if host == "funding.test" and path == "/v1/decisions":
            kind, self.as_of = request.url.params.get("kind"), request.url.params.get("as_of")
            found = [e for e in self.ledger if kind in (None, e["kind"])]
            # Pages of `ledger_page` entries, oldest first, as the API pages them with its cursor.
            start = int(request.url.params.get("cursor") or 0)
            more = start + self.ledger_page < len(found)
            return httpx.Response(200, json={"items": found[start:start + self.ledger_page],
                                             "next_cursor": str(start + self.ledger_page) if more else None,
                                             "as_of": None})
        if host == "followup.test" and path == "/v1/followups":  # a local operator's home lists its follow-ups
            return httpx.Response(200, json={"items": [], "next_cursor": None})
        return httpx.Response(404, json={"status": 404, "detail": "no route"})


@pytest.fixture
def programme() -> Programme:
    return Programme()


@pytest.fixture
def console(programme: Programme) -> TestClient:
    settings = ConsoleSettings(oidc_issuer=ISSUER, intake_url="http://intake.test",
                               partners_url="http://partners.test", funding_url="http://funding.test",
                               followup_url="http://followup.test")
    return TestClient(create_app(settings, Services(settings, transport=httpx.MockTransport(programme))),
                      follow_redirects=False)


ACCOUNTS = {
    "intake_officer": ("Inès Martin", ["intake_officer"], None),
    "support_idf": ("Île-de-France Entreprendre Solidaire", ["partner"], SUPPORT),
    "operator_sn": ("Thiès Conseil", ["partner"], OPERATOR),
    "funding_officer": ("Fabien Leroy", ["funding_officer"], None),
    "funding_approver": ("Françoise Petit", ["funding_approver"], None),
    "auditor": ("Anne Moreau", ["auditor"], None),
    # One person who both proposes and approves: four eyes is about humans, not roles.
    "officer_and_approver": ("Zoé Lambert", ["funding_officer", "funding_approver"], None),
}


def sign_in(client: TestClient, account: str) -> str:
    """Opens the account's session; returns its CSRF token. The stand-in reads who it is from the token."""
    name, roles, partner_id = ACCOUNTS[account]
    session = client.app.state.sessions.new("fr")
    session.user = {"sub": account, "name": name, "roles": roles, "partner_id": partner_id}
    session.access_token = json.dumps({"sub": account, "partner_id": partner_id})
    session.id_token, session.expires_at = "id-token", time.time() + 600
    client.cookies.clear()
    client.cookies.set(COOKIE, session.id)
    return session.csrf


def text_of(html: str) -> str:
    return re.sub(r"[\s\u00a0\u202f]+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def acts_on(html: str) -> set[str]:
    return set(re.findall(r'action="/dossiers/[^/"]+/acts/([a-z_]+)"', html))


# --- the intake officer ---------------------------------------------------------------------------


def test_the_intake_officer_is_offered_the_acts_the_dossiers_state_allows_and_only_those(
        console: TestClient, programme: Programme) -> None:
    sign_in(console, "intake_officer")
    preparing = programme.add(dossier("preparing", business_plan={"budget_lines": [
        {"label": "Stock", "amount_cents": 300_000}], "total_cents": 300_000}))
    unprepared = programme.add(dossier("preparing"))
    concluded = programme.add(dossier("feasibility", feasibility_conclusion="feasible"))
    no_consent = programme.add(dossier("feasibility", feasibility_conclusion="feasible",
                                       consent={"purposes": ["preparation"], "partners": []}))
    closed = programme.add(dossier("closed", closure_reason="abandoned"))
    assert acts_on(console.get(f"/dossiers/{preparing['id']}").text) == {"request_study", "withdraw", "close"}
    assert acts_on(console.get(f"/dossiers/{unprepared['id']}").text) == {"withdraw", "close"}
    assert acts_on(console.get(f"/dossiers/{concluded['id']}").text) == {"send_to_committee", "withdraw", "close"}
    page = console.get(f"/dossiers/{no_consent['id']}").text
    assert "send_to_committee" not in acts_on(page)
    assert "enregistrez d'abord le consentement au financement" in text_of(page)
    page = console.get(f"/dossiers/{closed['id']}").text
    assert acts_on(page) == set() and "Clos : Le porteur de projet a abandonné" in text_of(page)
    # The partners' and the committee's acts are never offered to the intake officer.
    assert not {"skills_review", "conclude_study", "propose", "decide"} & acts_on(
        console.get(f"/dossiers/{preparing['id']}").text)


def test_the_intake_officer_requests_the_study_and_sends_to_committee(console: TestClient,
                                                                     programme: Programme) -> None:
    csrf = sign_in(console, "intake_officer")
    d = programme.add(dossier("feasibility", feasibility_conclusion="feasible"))
    answer = console.post(f"/dossiers/{d['id']}/acts/send_to_committee", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == f"/dossiers/{d['id']}?done=send_to_committee"
    assert programme.posted == [("intake.test", f"/v1/projects/{d['id']}/committee", None)]
    assert "Le dossier est envoyé au comité." in console.get(answer.headers["location"]).text
    console.post(f"/dossiers/{d['id']}/acts/request_study", data={"csrf": csrf})
    assert programme.posted[-1] == ("intake.test", f"/v1/projects/{d['id']}/feasibility-study", None)


def test_an_act_without_the_forms_csrf_token_changes_nothing(console: TestClient, programme: Programme) -> None:
    sign_in(console, "intake_officer")
    d = programme.add(dossier("feasibility", feasibility_conclusion="feasible"))
    assert console.post(f"/dossiers/{d['id']}/acts/send_to_committee", data={"csrf": "forged"}).status_code == 403
    assert programme.posted == []


def test_a_refusal_of_the_api_is_a_sentence_never_the_raw_answer(console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "intake_officer")
    d = programme.add(dossier("feasibility", feasibility_conclusion="feasible"))
    programme.refuse[f"/v1/projects/{d['id']}/committee"] = (409, {
        "rule": "committee_needs_consent", "detail": "consent to funding is needed (raw words)"})
    answer = console.post(f"/dossiers/{d['id']}/acts/send_to_committee", data={"csrf": csrf})
    assert answer.status_code == 409
    page = text_of(answer.text)
    assert "Cet acte n'est pas accepté Le dossier ne peut aller au comité sans le consentement au financement." in page
    assert "raw words" not in page and "committee_needs_consent" not in page


def test_withdraw_needs_a_reason_and_close_a_reason_code(console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "intake_officer")
    d = programme.add(dossier("eligible"))
    answer = console.post(f"/dossiers/{d['id']}/acts/withdraw", data={"csrf": csrf, "reason": ""})
    assert answer.status_code == 422 and "Donnez la raison du retrait" in answer.text
    assert 'aria-describedby="withdraw-error"' in answer.text
    answer = console.post(f"/dossiers/{d['id']}/acts/close", data={"csrf": csrf, "reason": "duplicate_aid"})
    assert answer.status_code == 422 and "Choisissez la raison de la clôture." in answer.text
    assert programme.posted == []
    console.post(f"/dossiers/{d['id']}/acts/withdraw", data={"csrf": csrf, "reason": "Le porteur renonce"})
    console.post(f"/dossiers/{d['id']}/acts/close", data={"csrf": csrf, "reason": "abandoned"})
    assert programme.posted == [("intake.test", f"/v1/projects/{d['id']}/withdraw", {"reason": "Le porteur renonce"}),
                                ("intake.test", f"/v1/projects/{d['id']}/close", {"reason": "abandoned"})]
    # "Success" is offered only for a financed dossier (the API's rule success_needs_financing).
    assert 'value="success"' not in console.get(f"/dossiers/{d['id']}").text
    financed = programme.add(dossier("financed"))
    assert 'value="success"' in console.get(f"/dossiers/{financed['id']}").text


def test_the_intake_officer_settles_possible_duplicates(console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "intake_officer")
    review = {"person_id": OTHER_PERSON, "project_ids": [str(uuid.uuid4())], "matched": ["name"], "status": "flagged"}
    d = programme.add(dossier("eligible", duplicate_reviews=[review]))
    page = console.get(f"/dossiers/{d['id']}").text
    assert {"confirm_duplicate", "dismiss_duplicate"} <= acts_on(page) and "undo_duplicate" not in acts_on(page)
    console.post(f"/dossiers/{d['id']}/acts/confirm_duplicate", data={"csrf": csrf, "person_id": OTHER_PERSON})
    assert programme.posted[-1] == ("intake.test", f"/v1/projects/{d['id']}/duplicates/{OTHER_PERSON}/confirm", None)
    review["status"] = "confirmed"
    page = console.get(f"/dossiers/{d['id']}").text
    assert "undo_duplicate" in acts_on(page) and "confirm_duplicate" not in acts_on(page)
    console.post(f"/dossiers/{d['id']}/acts/undo_duplicate", data={"csrf": csrf, "person_id": OTHER_PERSON})
    assert programme.posted[-1][1].endswith(f"/duplicates/{OTHER_PERSON}/undo")
    # A person id that is not one changes nothing.
    assert console.post(f"/dossiers/{d['id']}/acts/dismiss_duplicate",
                        data={"csrf": csrf, "person_id": "../../close"}).status_code == 422
    assert len(programme.posted) == 2


def test_an_act_the_console_does_not_know_is_a_page_not_found(console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "intake_officer")
    d = programme.add(dossier("eligible"))
    assert console.post(f"/dossiers/{d['id']}/acts/delete", data={"csrf": csrf}).status_code == 404
    assert programme.posted == []


# --- the partners ---------------------------------------------------------------------------------


def test_the_support_structures_home_is_its_dossiers_with_what_each_lacks(console: TestClient,
                                                                         programme: Programme) -> None:
    sign_in(console, "support_idf")
    programme.add(dossier("assigned"))
    programme.add(dossier("at_committee"))
    programme.add(dossier("assigned", support_structure_id=str(uuid.uuid4())))  # another structure's
    page = text_of(console.get("/").text)
    assert "Vos dossiers (2)" in page
    assert "Commerce · Sénégal · Île-de-France En préparation" not in page
    assert "Partenaires désignés À préparer : bilan de compétences, formations, plan d'affaires" in page
    assert "Au comité Rien pour le moment" in page
    assert "Awa" not in page and "Boutique" not in page  # a partner never sees the person nor the title


def test_the_support_structure_prepares_the_dossier_on_its_page(console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "support_idf")
    d = programme.add(dossier("assigned"))
    page = console.get(f"/dossiers/{d['id']}").text
    assert acts_on(page) == {"skills_review", "training", "business_plan"}
    assert "Awa" not in page and "PAS-2026" not in page
    # The other partner, whose record it may not read, is said to be designated, never shown by its id;
    # the timeline a partner reads does not say who.
    assert OPERATOR not in page and "Opérateur local Désigné" in text_of(page)
    assert ">Qui<" not in page
    console.post(f"/dossiers/{d['id']}/acts/skills_review", data={"csrf": csrf, "summary": "Commerçante aguerrie"})
    console.post(f"/dossiers/{d['id']}/acts/training", data={"csrf": csrf, "course": "Gestion", "hours": "35",
                                                              "completed_on": "2026-11-30"})
    answer = console.post(f"/dossiers/{d['id']}/acts/business_plan", data={
        "csrf": csrf, "line_1_label": "Stock", "line_1_amount": "3 000,00", "line_2_label": "Loyer",
        "line_2_amount": "1200", "own_contribution": "1 200,00", "planned_jobs": "3"})
    assert answer.status_code == 303
    assert programme.posted == [
        ("intake.test", f"/v1/projects/{d['id']}/skills-review", {"summary": "Commerçante aguerrie"}),
        ("intake.test", f"/v1/projects/{d['id']}/trainings", {"course": "Gestion", "hours": 35,
                                                              "completed_on": "2026-11-30"}),
        ("intake.test", f"/v1/projects/{d['id']}/business-plan", {
            "budget_lines": [{"label": "Stock", "amount_cents": 300_000}, {"label": "Loyer", "amount_cents": 120_000}],
            "own_contribution_cents": 120_000, "planned_jobs": 3})]
    answer = console.post(f"/dossiers/{d['id']}/acts/business_plan", data={
        "csrf": csrf, "line_1_label": "Stock", "line_1_amount": "beaucoup", "own_contribution": "0", "planned_jobs": "3"})
    assert answer.status_code == 422 and "Chaque ligne de budget a un libellé et un montant en euros." in answer.text
    assert len(programme.posted) == 3


def test_the_local_operator_concludes_the_study_and_is_not_offered_the_preparation(
        console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "operator_sn")
    assigned = programme.add(dossier("assigned"))
    studied = programme.add(dossier("feasibility"))
    assert acts_on(console.get(f"/dossiers/{assigned['id']}").text) == set()
    page = console.get(f"/dossiers/{studied['id']}").text
    assert acts_on(page) == {"conclude_study"}
    assert 'id="preparation"' not in page  # the support structure's work is not the operator's to read
    home = text_of(console.get("/").text)
    assert "Étude de faisabilité Étude de faisabilité : la conclusion, si elle manque encore" in home
    console.post(f"/dossiers/{studied['id']}/acts/conclude_study",
                 data={"csrf": csrf, "conclusion": "feasible", "summary": "Marché porteur"})
    assert programme.posted == [("intake.test", f"/v1/projects/{studied['id']}/feasibility-study/conclusion",
                                 {"conclusion": "feasible", "summary": "Marché porteur"})]
    # The service's 403 for an act of the other kind is shown as such, not as an error page of the console.
    programme.refuse[f"/v1/projects/{assigned['id']}/skills-review"] = (403, {"detail": "not your kind"})
    answer = console.post(f"/dossiers/{assigned['id']}/acts/skills_review", data={"csrf": csrf, "summary": "x"})
    assert answer.status_code == 403 and "not your kind" not in answer.text


# --- the committee --------------------------------------------------------------------------------


def at_committee(programme: Programme, proposed_by: str | None = None) -> dict[str, Any]:
    d = programme.add(dossier("at_committee", feasibility_conclusion="feasible"))
    money = {"project_id": d["id"], "country": "SN", "version": 3, "local_operator_id": OPERATOR,
             "feasibility_grant": None, "financing": "requested", "dossier_version": 9,
             "requested_amount_cents": 550_000, "proposal": None, "approval": None, "tranches": [],
             "suspended": False, "open_alerts": []}
    if proposed_by:
        actor = f"user:{ISSUER}#{proposed_by}"
        money.update(financing="proposed", proposal={"amount_cents": 500_000, "envelope_id": ENVELOPE,
                                                     "rule_version": "2026.1", "proposed_by": actor})
        programme.ledger.append({"id": f"{d['id']}/4", "kind": "FinancingProposed", "project_id": d["id"],
                                 "envelope_id": ENVELOPE, "amount_cents": 500_000, "decided_by": actor,
                                 "decided_at": "2026-12-04T15:00:00+00:00", "rule_version": "2026.1",
                                 "justification": "Projet solide", "details": {}, "code_version": None})
    programme.financing[d["id"]] = money
    return d


def test_the_funding_officer_sees_the_committees_list_and_proposes(console: TestClient, programme: Programme) -> None:
    csrf = sign_in(console, "funding_officer")
    d = at_committee(programme)
    at_committee(programme, proposed_by="funding_officer")
    home = text_of(console.get("/").text)
    assert "Le comité (2)" in home and "Sans proposition" in home
    assert "5 000,00 € proposés par Fabien Leroy, en attente de décision" in home
    page = console.get(f"/dossiers/{d['id']}").text
    assert acts_on(page) == {"propose"}
    assert "Sénégal" in text_of(page) and "Mali" not in page  # the envelopes that can cover this dossier
    answer = console.post(f"/dossiers/{d['id']}/acts/propose", data={
        "csrf": csrf, "amount": "5 000,00", "envelope_id": ENVELOPE, "justification": "Projet solide"})
    assert answer.status_code == 303
    assert programme.posted == [("funding.test", f"/v1/financing/{d['id']}/proposal",
                                 {"amount_cents": 500_000, "envelope_id": ENVELOPE, "justification": "Projet solide"})]
    programme.refuse[f"/v1/financing/{d['id']}/proposal"] = (409, {"rule": "within_ceiling"})
    answer = console.post(f"/dossiers/{d['id']}/acts/propose", data={
        "csrf": csrf, "amount": "90 000", "envelope_id": ENVELOPE, "justification": "Projet solide"})
    assert answer.status_code == 409 and "Le montant dépasse le plafond fixé par les règles du programme." in answer.text


def test_an_approvers_inbox_shows_the_proposer_and_never_offers_their_own_proposal(
        console: TestClient, programme: Programme) -> None:
    theirs = at_committee(programme, proposed_by="funding_officer")
    own = at_committee(programme, proposed_by="officer_and_approver")
    at_committee(programme)  # no proposal: not in the inbox
    csrf = sign_in(console, "officer_and_approver")
    home = text_of(console.get("/").text)
    assert "Propositions à décider (1)" in home
    assert "5 000,00 € funding_officer 4 déc. 2026 Décider" in home  # another person: by their subject
    assert "Zoé Lambert 4 déc. 2026 Votre proposition : un·e autre approbateur·rice décide (quatre yeux)." in home
    # On the dossier page: no decision form for one's own proposal, and the reason why.
    page = console.get(f"/dossiers/{own['id']}").text
    assert "decide" not in acts_on(page)
    assert "vous ne pouvez pas le décider vous-même (quatre yeux)" in text_of(page)
    assert "Proposé par vous (Zoé Lambert)" in text_of(page)
    assert "decide" in acts_on(console.get(f"/dossiers/{theirs['id']}").text)
    console.post(f"/dossiers/{theirs['id']}/acts/decide",
                 data={"csrf": csrf, "decision": "approve", "justification": "Conforme"})
    assert programme.posted == [("funding.test", f"/v1/financing/{theirs['id']}/decision",
                                 {"decision": "approve", "justification": "Conforme"})]
    answer = console.post(f"/dossiers/{theirs['id']}/acts/decide", data={"csrf": csrf, "decision": "approve"})
    assert answer.status_code == 422 and "Choisissez la décision et donnez sa justification." in answer.text


def test_the_four_eyes_refusal_of_the_api_is_a_sentence(console: TestClient, programme: Programme) -> None:
    d = at_committee(programme, proposed_by="someone_else")
    csrf = sign_in(console, "funding_approver")
    programme.refuse[f"/v1/financing/{d['id']}/decision"] = (409, {"rule": "four_eyes"})
    answer = console.post(f"/dossiers/{d['id']}/acts/decide",
                          data={"csrf": csrf, "decision": "approve", "justification": "Conforme"})
    assert answer.status_code == 409
    assert "Quatre yeux : la personne qui a proposé ne peut pas décider elle-même." in text_of(answer.text)


def test_a_decided_proposal_leaves_the_inbox(console: TestClient, programme: Programme) -> None:
    d = at_committee(programme, proposed_by="funding_officer")
    programme.ledger.append({**programme.ledger[0], "id": f"{d['id']}/5", "kind": "FinancingDeferred",
                             "decided_by": f"user:{ISSUER}#funding_approver",
                             "decided_at": "2026-12-04T16:00:00+00:00"})
    sign_in(console, "funding_approver")
    assert "Aucune proposition n'attend de décision." in text_of(console.get("/").text)


def test_the_committees_pages_make_a_bounded_number_of_calls(console: TestClient, programme: Programme) -> None:
    for _ in range(30):
        at_committee(programme, proposed_by="funding_officer")
    sign_in(console, "funding_approver")
    console.get("/")
    assert len(programme.calls) == 6  # two lists of intake, four kinds of the ledger: never one per row


def test_an_approved_financing_says_how_much_and_by_whom_and_offers_no_decision(console: TestClient,
                                                                              programme: Programme) -> None:
    d = at_committee(programme, proposed_by="funding_officer")
    programme.financing[d["id"]].update(financing="approved", approval={
        "amount_cents": 500_000, "approved_by": f"user:{ISSUER}#funding_approver_2", "rule_version": "2026.1"})
    sign_in(console, "funding_approver")
    page = console.get(f"/dossiers/{d['id']}").text
    assert "Approuvé : 5 000,00 €, par funding_approver_2" in text_of(page)
    assert acts_on(page) == set()


def tranches(*states: tuple[bool, int, bool]) -> list[dict[str, Any]]:
    """(disbursed, evidenced euros, reconciled) per tranche of 2 500 €."""
    return [{"tranche": n, "amount_cents": 250_000, "disbursed": paid, "payee": "Awa Diop" if paid else None,
             "payment_reference": f"VIR-{n}" if paid else None, "evidenced_cents": evidenced * 100,
             "reconciled": reconciled} for n, (paid, evidenced, reconciled) in enumerate(states, start=1)]


def test_the_funding_officer_signs_the_agreement_then_pays_and_reconciles_tranches_in_order(
        console: TestClient, programme: Programme) -> None:
    d = at_committee(programme, proposed_by="funding_officer")
    money = programme.financing[d["id"]]
    money.update(financing="approved", approval={"amount_cents": 500_000, "approved_by": "user:x#a",
                                                 "rule_version": "2026.1"})
    csrf = sign_in(console, "funding_officer")
    assert acts_on(console.get(f"/dossiers/{d['id']}").text) == {"sign_agreement"}
    console.post(f"/dossiers/{d['id']}/acts/sign_agreement", data={"csrf": csrf, "signed_on": "2026-12-04"})
    assert programme.posted[-1] == ("funding.test", f"/v1/financing/{d['id']}/agreement", {"signed_on": "2026-12-04"})

    money.update(financing="agreed", tranches=tranches((False, 0, False), (False, 0, False)))
    page = console.get(f"/dossiers/{d['id']}").text
    assert acts_on(page) == {"pay_tranche"} and "Verser la tranche 1" in page
    console.post(f"/dossiers/{d['id']}/acts/pay_tranche", data={
        "csrf": csrf, "amount": "2 500,00", "payee": "Awa Diop", "payment_reference": "VIR-1"})
    assert programme.posted[-1] == ("funding.test", f"/v1/financing/{d['id']}/tranches",
                                    {"amount_cents": 250_000, "payee": "Awa Diop", "payment_reference": "VIR-1"})

    # Paid, not yet reconciled: the next tranche waits; evidence first, then the reconciliation.
    money["tranches"] = tranches((True, 1000, False), (False, 0, False))
    page = console.get(f"/dossiers/{d['id']}").text
    assert acts_on(page) == {"record_evidence"}
    assert "1 2 500,00 € Versée à Awa Diop, réf. VIR-1 1 000,00 € À rapprocher" in text_of(page)
    console.post(f"/dossiers/{d['id']}/acts/record_evidence",
                 data={"csrf": csrf, "tranche": "1", "label": "Facture du stock", "amount": "1 500"})
    assert programme.posted[-1] == ("funding.test", f"/v1/financing/{d['id']}/tranches/1/evidence",
                                    {"items": [{"label": "Facture du stock", "amount_cents": 150_000}]})
    money["tranches"] = tranches((True, 2500, False), (False, 0, False))
    assert acts_on(console.get(f"/dossiers/{d['id']}").text) == {"record_evidence", "reconcile"}
    console.post(f"/dossiers/{d['id']}/acts/reconcile", data={"csrf": csrf, "tranche": "1"})
    assert programme.posted[-1] == ("funding.test", f"/v1/financing/{d['id']}/tranches/1/reconciliation", None)
    money["tranches"] = tranches((True, 2500, True), (False, 0, False))
    assert acts_on(console.get(f"/dossiers/{d['id']}").text) == {"pay_tranche"}
    # An alert open in the follow-up suspends the payments: none is offered, the page says why.
    money["suspended"] = True
    page = console.get(f"/dossiers/{d['id']}").text
    assert acts_on(page) == set() and "Les versements sont suspendus" in page
    # A refusal of the API, as a sentence.
    money["suspended"] = False
    programme.refuse[f"/v1/financing/{d['id']}/tranches"] = (409, {"rule": "previous_tranche_reconciled"})
    answer = console.post(f"/dossiers/{d['id']}/acts/pay_tranche", data={
        "csrf": csrf, "amount": "2 500,00", "payee": "Awa Diop", "payment_reference": "VIR-2"})
    assert answer.status_code == 409 and "La tranche précédente doit d'abord être rapprochée." in text_of(answer.text)
    assert console.post(f"/dossiers/{d['id']}/acts/reconcile",
                        data={"csrf": csrf, "tranche": "un"}).status_code == 422


def test_the_acts_speak_english_too(console: TestClient, programme: Programme) -> None:
    d = programme.add(dossier("preparing", business_plan={"budget_lines": [
        {"label": "Stock", "amount_cents": 300_000}], "total_cents": 300_000}))
    sign_in(console, "intake_officer")
    console.app.state.sessions.get(console.cookies[COOKIE]).lang = "en"
    page = text_of(console.get(f"/dossiers/{d['id']}").text)
    assert "Request the feasibility study" in page and "Withdraw the dossier" in page
    assert "Total budget: €3,000.00" in page


def test_the_dossier_page_makes_a_bounded_number_of_calls(console: TestClient, programme: Programme) -> None:
    d = at_committee(programme)
    d["timeline"] *= 50  # however long the dossier's life
    sign_in(console, "funding_officer")
    console.get(f"/dossiers/{d['id']}")
    # the dossier, its two partners, its money, the envelopes to propose from
    assert len(programme.calls) == 5, programme.calls


def test_the_envelopes_allocated_reserved_disbursed_available_with_their_chart(console: TestClient,
                                                                              programme: Programme) -> None:
    sign_in(console, "funding_approver")
    page = console.get("/envelopes?year=2026")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Création d'entreprise · Sénégal 100 000,00 € 0,00 € 0,00 € 100 000,00 €" in text
    # The chart is drawn without inline style (the page's policy forbids it): SVG bars in thousandths.
    assert '<rect class="available" x="0" y="0" width="1000" height="20">' in page.text
    assert "style=" not in page.text
    assert programme.calls == ["GET funding.test/v1/envelopes"]
    sign_in(console, "intake_officer")
    assert console.get("/envelopes").status_code == 403


def test_the_ledger_as_of_a_day_in_the_words_of_the_office(console: TestClient, programme: Programme) -> None:
    d = at_committee(programme, proposed_by="funding_officer")
    sign_in(console, "auditor")
    page = console.get("/ledger?as_of=2026-12-04")
    assert page.status_code == 200
    # The end of that day in Paris (winter: UTC+1), as the API's RFC 3339 moment.
    assert programme.as_of == "2026-12-04T23:59:59+01:00"
    text = text_of(page.text)
    assert "4 déc. 2026 16:00 Financement proposé Voir le dossier 5 000,00 € funding_officer 2026.1 Projet solide" in text
    assert f'href="/dossiers/{d["id"]}"' in page.text
    assert console.get("/ledger?as_of=hier").status_code == 200 and programme.as_of is None  # not a day: all of it
    sign_in(console, "support_idf")
    assert console.get("/ledger").status_code == 403


def test_the_newest_proposals_are_in_the_inbox_however_long_the_ledger(console: TestClient,
                                                                        programme: Programme) -> None:
    programme.ledger_page = 2  # the API's pages, small here
    for _ in range(5):
        at_committee(programme, proposed_by="funding_officer")
    newest = at_committee(programme, proposed_by="funding_officer")
    sign_in(console, "funding_approver")
    home = console.get("/").text
    assert "Propositions à décider (6)" in text_of(home)
    assert f'href="/dossiers/{newest["id"]}#decide"' in home
    assert len(programme.calls) == 2 + 3 + 3  # intake's two lists; 3 pages of proposals, one of each decision
