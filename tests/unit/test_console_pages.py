"""The console's pages without a browser: httpx against the console app.

The services' answers here are those of their OpenAPI documents, played by a small stand-in for
intake's HTTP API (the browser test, tests/e2e/test_console_browser.py, runs the real services and
the real identity provider). A session is opened directly in the console's store: signing in
through the provider is the browser test's part.
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

from console import words
from console.app import create_app, euros_to_cents, local_path
from console.catalogue import untranslated
from console.services import Services
from console.sessions import COOKIE
from console.settings import ConsoleSettings

TOKEN = "the-officers-token"
DOSSIER_ID = str(uuid.uuid4())
SUMMARY = {"id": DOSSIER_ID, "reference": "PAS-2026-0001", "status": "at_committee", "country": "SN",
           "french_region": "FR-IDF", "sector": "trade", "title": "Boutique d'alimentation à Thiès",
           "requested_amount_cents": 550_000, "support_structure_id": None, "local_operator_id": None,
           "submitted_at": "2026-12-04T10:05:00+00:00"}
DETAIL = {**SUMMARY, "version": 4, "person_id": str(uuid.uuid4()),
          "promoter": {"given_name": "Awa", "family_name": "Diop"}, "description": "",
          "own_contribution_cents": 120_000,
          "planned_jobs": 3, "eligibility": {"eligible": False, "reasons": ["too_few_planned_jobs: 0 < 1"],
                                             "rule_version": "2026.1"},
          "possible_duplicates": [], "duplicate_reviews": [], "consent": {"purposes": [], "partners": []},
          "timeline": [{"type": "ProjectSubmitted", "version": 1, "at": "2026-12-04T10:05:00+00:00",
                        "actor": "user:intake_officer"},
                       {"type": "EligibilityAssessed", "version": 2, "at": "2026-12-04T10:05:01+00:00",
                        "actor": "service:intake"}]}


PARTNER_ID, ASSIGNED_ID = str(uuid.uuid4()), str(uuid.uuid4())


class Intake:
    """intake's HTTP API as its OpenAPI document describes it, for the routes the pages call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.answer_401 = False
        self.consents: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        if self.answer_401 or request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"status": 401, "detail": "the token has expired"})
        path, query = request.url.path, request.url.params
        if request.method == "GET" and path == "/v1/rules":
            return httpx.Response(200, json={"version": "2026.1", "countries": ["SN", "ML", "MA"],
                                             "ceilings_cents": {}, "default_ceiling_cents": 800_000,
                                             "min_planned_jobs": 1})
        if request.method == "GET" and path == "/v1/projects":
            items = [SUMMARY] * (3 if query.get("status") == "eligible" else 1)
            return httpx.Response(200, json={"items": items, "next_cursor": "c-2" if not query.get("cursor") else None})
        if request.method == "GET" and path == f"/v1/projects/{DOSSIER_ID}":
            return httpx.Response(200, json=DETAIL)
        if request.method == "GET" and path == f"/v1/partners/{PARTNER_ID}":
            return httpx.Response(200, json={"id": PARTNER_ID, "name": "Thiès Conseil (bureau d'études)"})
        if request.method == "GET" and path == f"/v1/projects/{ASSIGNED_ID}":
            return httpx.Response(200, json={
                **DETAIL, "id": ASSIGNED_ID, "status": "preparing", "local_operator_id": PARTNER_ID,
                "consent": {"purposes": ["funding"], "partners": []},
                "duplicate_reviews": [{"person_id": str(uuid.uuid4()), "project_ids": [DOSSIER_ID],
                                       "matched": ["name", "birth_date"], "status": "flagged"}],
                "timeline": [*DETAIL["timeline"],
                             {"type": "SkillsReviewCompleted", "version": 5, "at": "2026-12-05T09:00:00+00:00",
                              "actor": f"partner:{PARTNER_ID}"}]})
        if request.method == "GET" and path.startswith("/v1/projects/"):
            return httpx.Response(404, json={"status": 404, "detail": "no such dossier"})
        if request.method == "POST" and path == f"/v1/projects/{DOSSIER_ID}/consent":
            self.consents.append(json.loads(request.content))
            return httpx.Response(200, json={"id": DOSSIER_ID, "status": "at_committee", "version": 5})
        if request.method == "POST" and path == f"/v1/projects/{ASSIGNED_ID}/consent":
            return httpx.Response(409, json={"status": 409, "rule": "dossier_is_open", "detail": "closed"})
        if request.method == "POST" and path == "/v1/projects":
            body = json.loads(request.content)
            if not re.fullmatch(r"\+?[0-9 ().-]{3,30}", body["promoter"]["phone"]):
                return httpx.Response(422, json={"status": 422, "detail": "the request does not match the schema",
                                                 "errors": [{"loc": ["body", "promoter", "phone"],
                                                             "msg": "String should match pattern", "type": "x"}]})
            if body["requested_amount_cents"] > 10**8:
                return httpx.Response(409, json={"status": 409, "rule": "within_ceiling", "detail": "over"})
            self.created.append({**body, "idempotency_key": request.headers.get("idempotency-key")})
            return httpx.Response(201, json={"id": DOSSIER_ID, "reference": "PAS-2026-0002", "status": "eligible"})
        return httpx.Response(404, json={"status": 404, "detail": "no route"})


@pytest.fixture
def intake() -> Intake:
    return Intake()


@pytest.fixture
def console(intake: Intake) -> TestClient:
    settings = ConsoleSettings(oidc_issuer="http://127.0.0.1:9", intake_url="http://intake.test",
                               partners_url="http://partners.test")
    app = create_app(settings, Services(settings, transport=httpx.MockTransport(intake)))
    return TestClient(app, follow_redirects=False)


def sign_in(client: TestClient, roles: list[str], expires_in: float = 600, lang: str = "fr") -> Any:
    session = client.app.state.sessions.new(lang)
    session.user = {"sub": roles[0], "name": "Inès Martin", "roles": roles, "partner_id": None}
    session.access_token, session.id_token = TOKEN, "id-token"
    session.expires_at = time.time() + expires_in
    client.cookies.clear()
    client.cookies.set(COOKIE, session.id)
    return session


def text_of(html: str) -> str:
    """The page's words, spaces as one (Babel writes narrow no-break spaces in French amounts)."""
    return re.sub(r"[\s\u00a0\u202f]+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_a_person_not_signed_in_is_sent_to_sign_in_and_comes_back_to_the_page_asked(console: TestClient) -> None:
    answer = console.get("/dossiers?status=eligible")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/auth/login?next=%2Fdossiers%3Fstatus%3Deligible"


def test_an_expired_session_signs_in_again(console: TestClient) -> None:
    sign_in(console, ["intake_officer"], expires_in=-1)
    answer = console.get("/dossiers/new")
    assert answer.status_code == 303 and answer.headers["location"] == "/auth/login?next=%2Fdossiers%2Fnew"


def test_a_form_sent_after_the_sign_in_expired_comes_back_filled_in(console: TestClient, intake: Intake) -> None:
    session = sign_in(console, ["intake_officer"], expires_in=-1)
    answer = console.post("/dossiers/new", data={**FORM, "csrf": session.csrf, "form_key": "k9"})
    assert answer.status_code == 303 and answer.headers["location"] == "/auth/login?next=%2Fdossiers%2Fnew"
    assert ("POST", "/v1/projects") not in intake.calls
    session.expires_at = time.time() + 600  # signed in again (the same session, renewed at the callback)
    html = console.get("/dossiers/new").text
    assert 'value="Diop"' in html and 'value="k9"' in html  # the same form key: taken in once
    assert 'value="Diop"' not in console.get("/dossiers/new").text  # given back once


def test_a_token_the_service_refuses_signs_in_again(console: TestClient, intake: Intake) -> None:
    sign_in(console, ["intake_officer"])
    intake.answer_401 = True
    answer = console.get("/dossiers")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/auth/login?next=%2Fdossiers")


def test_pages_carry_a_strict_policy_and_the_session_cookie_is_http_only(console: TestClient) -> None:
    sign_in(console, ["intake_officer"])
    answer = console.get("/")
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain HTTP on 127.0.0.1; elsewhere Secure:
    assert ConsoleSettings(console_url="https://console.example.org").secure_cookies
    assert "<script" not in answer.text and TOKEN not in answer.text


def test_the_intake_officers_home_is_their_work_queue_with_counts(console: TestClient, intake: Intake) -> None:
    sign_in(console, ["intake_officer"])
    answer = console.get("/")
    page = text_of(answer.text)
    assert "À traiter" in page and "3+ Éligibles : consentement et partenaires à suivre" in page
    assert '<a href="/dossiers?status=eligible">' in answer.text
    assert len(intake.calls) == 3  # one call per line of the queue, bounded


def test_other_roles_see_who_they_are_and_what_is_not_built_yet(console: TestClient, intake: Intake) -> None:
    for role in ("admin",):
        sign_in(console, [role])
        answer = console.get("/")
        assert answer.status_code == 200
        assert words.ROLES[role] in text_of(answer.text) and "pas encore construites" in answer.text
        assert console.get("/dossiers/new").status_code == 403
    assert intake.calls == []


def test_the_dossier_list_in_the_words_of_a_french_office(console: TestClient) -> None:
    sign_in(console, ["intake_officer"])
    answer = console.get("/dossiers?status=at_committee&country=SN")
    page = text_of(answer.text)
    assert "5 500,00 €" in page and "Sénégal" in page and "Île-de-France" in page and "4 déc. 2026" in page
    assert "Au comité" in page and "at_committee</span>" not in answer.text
    assert 'href="/dossiers?status=at_committee&amp;country=SN&amp;cursor=c-2"' in answer.text
    second = console.get("/dossiers?status=at_committee&country=SN&cursor=c-2")
    assert "Première page" in second.text and "Page suivante" not in second.text


def test_the_dossier_page_eligibility_and_timeline(console: TestClient) -> None:
    sign_in(console, ["intake_officer"])
    page = text_of(console.get(f"/dossiers/{DOSSIER_ID}").text)
    assert "Inéligible · règles version 2026.1" in page
    assert "Le projet prévoit trop peu d'emplois." in page
    assert "4 déc. 2026 11:05 Dossier reçu Inès Martin" in page  # Paris time; the reader's own act by their name
    assert "Éligibilité examinée Passerelle (automatique)" in page
    assert console.get(f"/dossiers/{uuid.uuid4()}").status_code == 404
    assert console.get("/dossiers/not-an-id").status_code == 404


def test_a_page_that_does_not_exist_is_a_page_not_a_500(console: TestClient) -> None:
    answer = console.get("/nowhere")
    assert answer.status_code == 404 and "Page introuvable" in answer.text


def test_the_dossier_page_names_its_partners_what_they_did_and_the_duplicates(console: TestClient,
                                                                               intake: Intake) -> None:
    sign_in(console, ["intake_officer"])
    page = text_of(console.get(f"/dossiers/{ASSIGNED_ID}").text)
    assert "Opérateur local Thiès Conseil (bureau d'études)" in page
    assert "Structure d'accompagnement Pas encore désignée" in page
    assert "Bilan de compétences fait Thiès Conseil (bureau d'études)" in page
    assert intake.calls.count(("GET", f"/v1/partners/{PARTNER_ID}")) == 1  # one call per partner, not per event
    # The possible duplicates, with what matched and where their review stands.
    assert ("Identifiants communs Examen Décider Dossier 1 nom, date de naissance À examiner "
            "Confirmer : une seule personne Écarter : deux personnes") in page
    assert "Doublons possibles" not in text_of(console.get(f"/dossiers/{DOSSIER_ID}").text)  # none: no section


def test_the_intake_form_refuses_without_its_csrf_token(console: TestClient, intake: Intake) -> None:
    sign_in(console, ["intake_officer"])
    answer = console.post("/dossiers/new", data={"given_name": "Awa"})
    assert answer.status_code == 403
    for wrong in ("not-the-sessions", "é" * 43):  # any text, never a 500
        answer = console.post("/dossiers/new", data={"given_name": "Awa", "csrf": wrong})
        assert answer.status_code == 403
    assert ("POST", "/v1/projects") not in intake.calls


FORM = {"given_name": "Awa", "family_name": "Diop", "birth_date": "1988-03-14", "phone": "+221 77 123 45 67",
        "email": "", "residence_status": "regular", "document_number": "", "country": "SN",
        "french_region": "FR-IDF", "sector": "trade", "title": "Boutique", "description": "",
        "requested_amount": "5 500,00", "own_contribution": "1200", "planned_jobs": "3"}


def test_the_intake_form_shows_each_refusal_next_to_its_field(console: TestClient, intake: Intake) -> None:
    session = sign_in(console, ["intake_officer"])
    answer = console.post("/dossiers/new", data={**FORM, "phone": "call me", "csrf": session.csrf,
                                                 "form_key": "k1"})
    assert answer.status_code == 422
    assert re.search(r'<p class="error" id="phone-error">Indiquez un numéro de téléphone[^<]*</p>\s*<input id="phone"',
                     answer.text)
    assert 'aria-describedby="phone-error"' in answer.text and '<a href="#phone">' in answer.text
    assert "String should match pattern" not in answer.text  # the API's words are never shown
    assert 'value="call me"' in answer.text and 'value="Diop"' in answer.text  # what was typed is kept
    # An amount the console cannot read is refused before any call.
    calls = len(intake.calls)
    answer = console.post("/dossiers/new", data={**FORM, "requested_amount": "beaucoup", "csrf": session.csrf})
    assert answer.status_code == 422 and 'id="requested_amount-error"' in answer.text
    assert ("POST", "/v1/projects") not in intake.calls[calls:]
    # A rule of the programme, as a sentence.
    answer = console.post("/dossiers/new", data={**FORM, "requested_amount": "2000000", "csrf": session.csrf})
    assert answer.status_code == 409 and words.RULES["within_ceiling"] in answer.text


def test_a_dossier_taken_in_goes_to_its_page(console: TestClient, intake: Intake) -> None:
    session = sign_in(console, ["intake_officer"])
    answer = console.post("/dossiers/new", data={**FORM, "csrf": session.csrf, "form_key": "form-1"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/dossiers/{DOSSIER_ID}?done=taken_in"
    [created] = intake.created
    assert created["requested_amount_cents"] == 550_000 and created["own_contribution_cents"] == 120_000
    assert created["promoter"]["email"] is None and created["planned_jobs"] == 3
    assert created["idempotency_key"] == "console-intake-form-1"  # a second click takes nothing in twice
    assert "Le dossier est pris en charge." in console.get(answer.headers["location"]).text


def test_consent_is_recorded_from_the_dossier_page(console: TestClient, intake: Intake) -> None:
    session = sign_in(console, ["intake_officer"])
    page = console.get(f"/dossiers/{DOSSIER_ID}").text
    assert f'action="/dossiers/{DOSSIER_ID}/consent"' in page and 'id="purpose-funding"' in page
    url = f"/dossiers/{DOSSIER_ID}/consent"
    assert console.post(url, data={"purposes": ["funding"]}).status_code == 403  # no CSRF token
    answer = console.post(url, data={"csrf": session.csrf})  # nothing ticked: said on the page, no call
    assert answer.status_code == 422 and "Cochez au moins une finalité." in answer.text and intake.consents == []
    answer = console.post(url, data={"csrf": session.csrf, "purposes": ["funding", "statistics", "made-up"]})
    assert answer.status_code == 303 and answer.headers["location"] == f"/dossiers/{DOSSIER_ID}?done=consent"
    assert intake.consents == [{"purposes": ["funding", "statistics"], "partners": []}]
    assert "Le consentement est enregistré." in console.get(answer.headers["location"]).text
    # A rule of the dossier's state, as a sentence on the dossier's page.
    answer = console.post(f"/dossiers/{ASSIGNED_ID}/consent", data={"csrf": session.csrf, "purposes": ["funding"]})
    assert answer.status_code == 409 and words.RULES["dossier_is_open"] in text_of(answer.text)
    # Consent adds up: the form offers what is not consented yet (purposes, sharing with a partner).
    page = console.get(f"/dossiers/{ASSIGNED_ID}").text
    assert 'id="purpose-funding"' not in page and 'id="purpose-preparation"' in page
    assert f'name="partners" value="{PARTNER_ID}"' in page
    # Only intake officers get the form.
    sign_in(console, ["auditor"])
    assert 'id="purpose-funding"' not in console.get(f"/dossiers/{DOSSIER_ID}").text


def test_english_is_selectable(console: TestClient) -> None:
    session = sign_in(console, ["intake_officer"])
    assert console.post("/language", data={"lang": "en", "next": "/dossiers"}).status_code == 403  # no CSRF
    answer = console.post("/language", data={"lang": "en", "next": "/dossiers", "csrf": session.csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/dossiers"
    html = console.get("/dossiers").text
    page = text_of(html)
    assert '<html lang="en">' in html and "€5,500.00" in page and "Senegal" in page and "At committee" in page
    assert "4 Dec 2026" in page
    # A language that does not exist is French; a next that leaves the console stays in it.
    answer = console.post("/language", data={"lang": "xx", "next": "//evil.example/", "csrf": session.csrf})
    assert answer.headers["location"] == "/" and session.lang == "fr"


def test_sign_out_needs_the_csrf_token(console: TestClient) -> None:
    sign_in(console, ["intake_officer"])
    assert console.post("/auth/logout", data={}).status_code == 403


def test_a_callback_without_a_sign_in_under_way_is_refused(console: TestClient) -> None:
    answer = console.get("/auth/callback?code=x&state=made-up")
    assert answer.status_code == 400 and "La connexion n'a pas abouti" in text_of(answer.text)


def test_a_provider_out_of_reach_is_said_not_a_500(console: TestClient) -> None:
    assert console.get("/auth/login").status_code == 503


def test_only_local_pages_are_gone_back_to() -> None:
    assert local_path("/dossiers?status=eligible") == "/dossiers?status=eligible"
    for target in ("//evil.example", "https://evil.example", "evil", "/\\evil.example", "", None):
        assert local_path(target) == "/"


def test_amounts_dates_countries_regions_as_a_french_office_writes_them() -> None:
    space = lambda s: re.sub(r"[\u00a0\u202f]", " ", s)  # noqa: E731
    assert space(words.amount(550_000, "fr")) == "5 500,00 €"
    assert words.amount(550_000, "en") == "€5,500.00"
    assert words.day("2026-12-04", "fr") == "4 déc. 2026"
    assert words.country("SN", "fr") == "Sénégal" and words.region("FR-IDF") == "Île-de-France"
    assert euros_to_cents("5 500,00 €") == 550_000 and euros_to_cents("12.5") == 1250
    assert euros_to_cents("1,2,3") is None and euros_to_cents("-5") is None


def test_every_sentence_has_its_english() -> None:
    assert untranslated() == []
