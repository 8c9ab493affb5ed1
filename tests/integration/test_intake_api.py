"""Intake's HTTP API on real PostgreSQL and Kafka: validation, roles, idempotency, personal data."""

from __future__ import annotations

import copy
import time
import uuid

import jwt
import pytest
from fastapi.testclient import TestClient

from services.intake.main import create_app
from shared.auth import issue_token
from tests.conftest import actor, bearer

pytestmark = pytest.mark.integration

BODY = {
    "promoter": {"given_name": "Awa", "family_name": "Diop", "birth_date": "1990-01-01",
                 "phone": "+33 6 12 34 56 78", "email": "awa@example.org", "residence_status": "regular"},
    "country": "SN", "french_region": "FR-IDF", "sector": "trade", "title": "Boutique de quartier",
    "description": "", "requested_amount_cents": 500_000, "own_contribution_cents": 100_000, "planned_jobs": 2,
}


def body(**changes) -> dict:
    b = copy.deepcopy(BODY)
    b["promoter"]["family_name"] = f"Diop-{uuid.uuid4().hex[:6]}"
    for key, value in changes.items():
        if key.startswith("promoter."):
            b["promoter"][key.split(".", 1)[1]] = value
        else:
            b[key] = value
    return b


@pytest.fixture
def intake(make_settings):
    settings = make_settings("intake")
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        client.officer = bearer(settings, "intake_officer", sub="officer-1")
        yield client


def stored_events(client) -> int:
    return client.app.state.runtime.app.recorder.max_notification_id() or 0


def test_a_dossier_is_submitted_screened_and_listed(intake):
    r = intake.post("/v1/projects", json=body(), headers=intake.officer)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "eligible" and created["reference"].startswith("PAS-")
    assert r.headers["location"] == f"/v1/projects/{created['id']}"

    detail = intake.get(f"/v1/projects/{created['id']}", headers=intake.officer).json()
    assert detail["eligibility"]["rule_version"] == "default-2026.1"
    assert detail["promoter"]["given_name"] == "Awa"
    assert [t["type"] for t in detail["timeline"]] == ["ProjectSubmitted", "EligibilityAssessed"]
    assert detail["timeline"][0]["actor"] == actor(intake.settings, "officer-1")

    deadline = time.monotonic() + 10
    while True:
        page = intake.get("/v1/projects?country=SN&status=eligible", headers=intake.officer).json()
        if page["items"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert page["items"][0]["id"] == created["id"]


def test_the_list_is_paginated_by_cursor(intake):
    ids = [intake.post("/v1/projects", json=body(), headers=intake.officer).json()["id"] for _ in range(5)]
    intake.app.state.runtime.projector.catch_up()
    seen, cursor = [], None
    while True:
        page = intake.get("/v1/projects", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=intake.officer).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    assert intake.get("/v1/projects?cursor=garbage", headers=intake.officer).status_code == 422


def test_personal_data_is_for_intake_officers_only(intake):
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    for role in ("funding_officer", "auditor", "followup_officer"):
        detail = intake.get(f"/v1/projects/{created['id']}", headers=bearer(intake.settings, role)).json()
        assert detail["promoter"] is None and detail["person_id"]
    # Nothing personal is stored in clear.
    app = intake.app.state.runtime.app
    for notification in app.recorder.select_notifications(0, 100):
        assert b"Awa" not in notification.state and b"awa@example.org" not in notification.state


def test_a_partner_sees_only_its_dossiers(intake):
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    stranger = bearer(intake.settings, "partner", partner_id="someone-else")
    assert intake.get(f"/v1/projects/{created['id']}", headers=stranger).status_code == 404
    app = intake.app.state.runtime.app
    app.record_partners(uuid.UUID(created["id"]), "support-1", "operator-1")
    mine = bearer(intake.settings, "partner", partner_id="operator-1")
    assert intake.get(f"/v1/projects/{created['id']}", headers=mine).status_code == 200
    intake.app.state.runtime.projector.catch_up()
    assert [p["id"] for p in intake.get("/v1/projects", headers=mine).json()["items"]] == [created["id"]]
    assert intake.get("/v1/projects", headers=stranger).json()["items"] == []


def test_a_partner_reads_of_its_dossier_only_what_the_partner_feed_shares(intake):
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    intake.app.state.runtime.app.record_partners(uuid.UUID(created["id"]), "support-1", "operator-1")
    mine = bearer(intake.settings, "partner", partner_id="support-1")
    detail = intake.get(f"/v1/projects/{created['id']}", headers=mine).json()
    assert detail["support_structure_id"] == "support-1" and detail["country"] == "SN"
    for private in ("person_id", "promoter", "title", "description", "reference", "possible_duplicates",
                    "consent", "eligibility", "business_plan"):
        assert private not in detail, private
    assert detail["timeline"] and all(set(t) == {"type", "version", "at"} for t in detail["timeline"])
    assert "officer-1" not in str(detail) and "Awa" not in str(detail)
    assert detail["skills_review_done"] is False  # the preparation: the support structure's
    operator = bearer(intake.settings, "partner", partner_id="operator-1")
    assert intake.get(f"/v1/projects/{created['id']}", headers=operator).json()["skills_review_done"] is None
    intake.app.state.runtime.projector.catch_up()
    listed = intake.get("/v1/projects", headers=mine).json()["items"]
    assert [p["id"] for p in listed] == [created["id"]] and "title" not in listed[0]
    assert "reference" not in listed[0]
    staff = intake.get("/v1/projects", headers=intake.officer).json()["items"]
    assert staff[0]["title"] and staff[0]["reference"]  # the officers' listing keeps its fields


def test_a_partner_acts_by_its_kind_on_its_own_dossiers(intake):
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    project_id = created["id"]
    intake.app.state.runtime.app.record_partners(uuid.UUID(project_id), "support-1", "operator-1")
    support = bearer(intake.settings, "partner", partner_id="support-1")
    operator = bearer(intake.settings, "partner", partner_id="operator-1")
    stranger = bearer(intake.settings, "partner", partner_id="operator-2")
    before = stored_events(intake)
    review = {"summary": "knows the trade"}
    conclusion = {"conclusion": "feasible", "summary": "a market for it"}
    # A local operator does not review skills, a support structure does not conclude the study.
    r = intake.post(f"/v1/projects/{project_id}/skills-review", json=review, headers=operator)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert intake.post(f"/v1/projects/{project_id}/feasibility-study/conclusion", json=conclusion,
                       headers=support).status_code == 403
    assert intake.post(f"/v1/projects/{project_id}/trainings", headers=operator,
                       json={"course": "accounting", "hours": 20, "completed_on": "2026-01-10"}).status_code == 403
    # Another partner: 404 whatever the act, as for a dossier that does not exist.
    assert intake.post(f"/v1/projects/{project_id}/skills-review", json=review, headers=stranger).status_code == 404
    assert intake.post(f"/v1/projects/{uuid.uuid4()}/skills-review", json=review, headers=support).status_code == 404
    assert intake.post("/v1/projects/not-a-uuid/skills-review", json=review, headers=support).status_code == 422
    assert stored_events(intake) == before
    r = intake.post(f"/v1/projects/{project_id}/skills-review", json=review, headers=support)
    assert r.status_code == 200, r.text
    timeline = intake.get(f"/v1/projects/{project_id}", headers=intake.officer).json()["timeline"]
    assert timeline[-1]["partner_id"] == "support-1" and timeline[-1]["actor"].startswith("user:")


def test_a_token_mixing_the_partner_role_with_a_staff_role_is_refused(intake):
    from shared.auth import issue_token

    token = issue_token(intake.settings, "intake_officer", sub="olga", partner_id="support-1",
                        roles=["intake_officer", "partner"])
    r = intake.get("/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "partner role alone" in r.json()["detail"]
    r = intake.post("/v1/projects", json=body(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_a_partner_id_claim_that_is_not_a_string_is_a_401_not_a_crash(intake):
    import jwt

    settings = intake.settings
    claims = {"sub": "p-1", "roles": ["partner"], "partner_id": ["support-1", "operator-1"],
              "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "exp": int(time.time()) + 60}
    token = jwt.encode(claims, (settings.keys_dir / "jwt-dev.pem").read_bytes(), algorithm="RS256")
    r = intake.get("/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "partner_id" in r.json()["detail"]


def test_the_same_idempotency_key_replays_the_first_answer_and_writes_nothing(intake):
    headers = {**intake.officer, "Idempotency-Key": "submit-42"}
    first = intake.post("/v1/projects", json=BODY, headers=headers)
    before = stored_events(intake)
    again = intake.post("/v1/projects", json=BODY, headers=headers)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert stored_events(intake) == before
    other = intake.post("/v1/projects", json=body(), headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    assert stored_events(intake) == before


def test_an_illegal_transition_is_409_naming_the_rule(intake):
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    r = intake.post(f"/v1/projects/{created['id']}/committee", headers=intake.officer)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["rule"] == "committee_after_study"
    assert r.json()["type"].endswith("/rule/committee_after_study")


def test_unknown_dossier_is_404(intake):
    r = intake.get(f"/v1/projects/{uuid.uuid4()}", headers=intake.officer)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


BAD_BODIES = {
    "unknown country": body(country="FR"),
    "lower-case country": body(country="sn"),
    "negative amount": body(requested_amount_cents=-1),
    "negative contribution": body(own_contribution_cents=-5),
    "amount as string": body(requested_amount_cents="500000"),
    "amount as float": body(requested_amount_cents=12.5),
    "unknown region": body(french_region="FR-XXX"),
    "title too long": body(title="x" * 201),
    "missing promoter": {k: v for k, v in BODY.items() if k != "promoter"},
    "unknown field": body(admin=True),
    "bad email": body(**{"promoter.email": "not-an-email"}),
    "birth in the future": body(**{"promoter.birth_date": "2999-01-01"}),
    "unknown residence status": body(**{"promoter.residence_status": "tourist"}),
    "empty name": body(**{"promoter.given_name": ""}),
    "jobs as bool": body(planned_jobs=True),
    "list instead of object": [BODY],
}


def test_bad_input_is_422_problem_json_and_writes_nothing(intake):
    before = stored_events(intake)
    for case, bad in BAD_BODIES.items():
        r = intake.post("/v1/projects", json=bad, headers=intake.officer)
        assert r.status_code == 422, f"{case}: {r.status_code} {r.text}"
        assert r.headers["content-type"] == "application/problem+json", case
        assert r.json()["status"] == 422 and r.json()["type"].startswith("https://"), case
    assert stored_events(intake) == before


MALFORMED = [
    (b'{"promoter": ', "application/json"),
    (b"\xff\xfe\x00", "application/json"),
    (b"country=SN", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
    (b"null", "application/json"),
]


def test_malformed_bodies_are_4xx_problem_json(intake):
    before = stored_events(intake)
    for raw, content_type in MALFORMED:
        r = intake.post("/v1/projects", content=raw, headers={**intake.officer, "Content-Type": content_type})
        assert 400 <= r.status_code < 500, f"{raw!r}: {r.status_code} {r.text}"
        assert r.headers["content-type"] == "application/problem+json", raw
    assert stored_events(intake) == before


def test_a_huge_body_is_413(intake):
    before = stored_events(intake)
    huge = body(description="x" * 200_000)
    r = intake.post("/v1/projects", json=huge, headers=intake.officer)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert stored_events(intake) == before


def test_tokens_missing_expired_forged_or_of_the_wrong_role_are_refused(intake):
    settings = intake.settings
    before = stored_events(intake)
    expired = issue_token(settings, "intake_officer", ttl_seconds=-10)
    forged_key = jwt.encode({"sub": "x", "roles": ["intake_officer"], "iss": settings.jwt_issuer,
                             "aud": settings.jwt_audience, "exp": int(time.time()) + 60}, "secret", algorithm="HS256")
    valid = issue_token(settings, "intake_officer")
    head, payload, signature = valid.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b"intake_officer", b"admin_officer_")).decode()
    cases = {
        "missing": ({}, 401),
        "not bearer": ({"Authorization": f"Basic {valid}"}, 401),
        "expired": ({"Authorization": f"Bearer {expired}"}, 401),
        "forged (HS256)": ({"Authorization": f"Bearer {forged_key}"}, 401),
        "tampered": ({"Authorization": f"Bearer {head}.{tampered_payload}.{signature}"}, 401),
        "garbage": ({"Authorization": "Bearer abc.def"}, 401),
        "wrong role": (bearer(settings, "auditor"), 403),
        "partner": (bearer(settings, "partner", partner_id="p1"), 403),
    }
    for name, (headers, status) in cases.items():
        r = intake.post("/v1/projects", json=body(), headers=headers)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        assert r.headers["content-type"] == "application/problem+json", name
    assert stored_events(intake) == before


def test_health_and_readiness(intake):
    assert intake.get("/healthz").json()["status"] == "ok"
    deadline = time.monotonic() + 15
    while (r := intake.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)
    assert r.json()["checks"]["store"] == "ok"


def test_the_checkpoint_key_is_public_and_opens_the_notes_the_relay_signs(intake):
    import base64

    from shared.checkpoint import Checkpoint, load_signer, open_note

    r = intake.get("/v1/keys")  # no token: a public key is for anyone who verifies
    assert r.status_code == 200, r.text
    key = r.json()["keys"][0]
    assert key["name"] == r.json()["checkpoint_origin"] == "passerelle/intake" and key["algorithm"] == "Ed25519"
    note = load_signer(intake.settings).sign(Checkpoint("passerelle/intake", 1, bytes(32)).text())
    assert open_note(note, key["name"], base64.b64decode(key["public_key"])).startswith("passerelle/intake\n1\n")
    assert key["verifier_key"].startswith(f"passerelle/intake+{key['key_id']}+")


def test_metrics_count_commands_and_show_lags(intake):
    intake.post("/v1/projects", json=body(), headers=intake.officer)
    text = intake.get("/metrics").text
    assert 'passerelle_commands_total{service="intake",route="/v1/projects",status="201"} 1' in text
    assert "passerelle_relay_lag_events" in text and "passerelle_consumer_processed_total" in text


def identifiers_of(client, person_id: str) -> list:
    recorder = client.app.state.runtime.app.recorder
    return recorder._rows(f"SELECT kind FROM {recorder.identifiers_table} WHERE person_id = %s", (person_id,))


def test_forgetting_a_person_erases_their_data_and_keeps_the_dossier(intake):
    submitted = body()
    created = intake.post("/v1/projects", json=submitted, headers=intake.officer).json()
    detail = intake.get(f"/v1/projects/{created['id']}", headers=intake.officer).json()
    person = detail["person_id"]
    assert identifiers_of(intake, person), "the identifiers' hashes are stored with the person"
    admin = bearer(intake.settings, "admin", sub="dpo")
    why = {"reason": "consent_withdrawn", "note": "letter RGPD-77 received by post"}
    assert intake.post(f"/v1/persons/{person}/forget", headers=intake.officer, json=why).status_code == 403
    for wrong in ({}, {"reason": "the person asked (GDPR art. 17)"}, {"reason": "objection", "note": ""}):
        refused = intake.post(f"/v1/persons/{person}/forget", headers=admin, json=wrong)
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json", wrong
    in_the_url = intake.delete(f"/v1/persons/{person}", headers=admin, params={"reason": "objection"})
    assert in_the_url.status_code == 422, "a reason in a query string is refused: URLs end up in logs"
    assert intake.get(f"/v1/projects/{created['id']}", headers=intake.officer).json()["promoter"] is not None
    assert intake.post(f"/v1/persons/{person}/forget", headers=admin, json=why).status_code == 204
    after = intake.get(f"/v1/projects/{created['id']}", headers=intake.officer).json()
    assert after["promoter"] is None, "nobody can read the promoter's data any more"
    assert after["requested_amount_cents"] == detail["requested_amount_cents"], "amounts stay whole"
    again = intake.post(f"/v1/persons/{person}/forget", headers=admin, json=why)
    assert again.status_code == 409 and again.json()["rule"] == "forget_once"
    assert intake.post(f"/v1/persons/{uuid.uuid4()}/forget", headers=admin, json=why).status_code == 404
    app = intake.app.state.runtime.app
    assert app.recorder.find_data_key(person) is None, "the key went with PersonForgotten"
    assert identifiers_of(intake, person) == [], "and so did the identifiers' hashes"
    for notification in app.recorder.select_notifications(0, 100):
        assert b"RGPD-77" not in notification.state, "the note is never stored in clear"

    # The person comes back: a new person record with a new key, which can be forgotten too.
    back = intake.post("/v1/projects", json=submitted, headers=intake.officer).json()
    returned = intake.get(f"/v1/projects/{back['id']}", headers=intake.officer).json()
    assert returned["person_id"] != person and returned["promoter"]["family_name"] == submitted["promoter"]["family_name"]
    assert returned["duplicate_reviews"] == [], "a forgotten person's identifiers are gone: nothing to match"
    assert intake.get(f"/v1/projects/{created['id']}", headers=intake.officer).json()["promoter"] is None
    gone = intake.request("DELETE", f"/v1/persons/{returned['person_id']}", headers=admin,
                          json={"reason": "end_of_programme_request"})
    assert gone.status_code == 204, gone.text


def test_a_dossier_whose_key_was_replaced_reads_as_erased_not_500(intake):
    """Ids were once derived from identities: a forgotten person who came back got a new key under
    the old id, which cannot open the old dossier (it answered 500 InvalidTag)."""
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    app = intake.app.state.runtime.app
    person = intake.get(f"/v1/projects/{created['id']}", headers=intake.officer).json()["person_id"]
    app.recorder.delete_data_key(person)
    app.recorder._run(f"INSERT INTO {app.recorder.data_keys_table} (key_id, wrapped) VALUES (%s, %s)",
                      app.vault.seal(uuid.UUID(person), {}, new_person=True).new_key)
    r = intake.get(f"/v1/projects/{created['id']}", headers=intake.officer)
    assert r.status_code == 200 and r.json()["promoter"] is None


def test_homonyms_born_the_same_day_are_two_persons_until_an_officer_confirms(intake):
    first_body = body()
    second_body = copy.deepcopy(first_body)
    second_body["promoter"]["phone"] = "+33 7 00 00 00 01"
    first = intake.post("/v1/projects", json=first_body, headers=intake.officer).json()
    second = intake.post("/v1/projects", json=second_body, headers=intake.officer).json()
    assert second["status"] == "eligible", "a possible duplicate is not refused"
    one = intake.get(f"/v1/projects/{first['id']}", headers=intake.officer).json()
    two = intake.get(f"/v1/projects/{second['id']}", headers=intake.officer).json()
    assert one["person_id"] != two["person_id"], "the same name and birth date make two person records"
    assert two["duplicate_reviews"] == [{"person_id": one["person_id"], "project_ids": [first["id"]],
                                         "matched": ["birth_date", "name"], "status": "flagged"}]
    assert two["possible_duplicates"] == [first["id"]]
    mine = bearer(intake.settings, "partner", partner_id="operator-1")
    intake.app.state.runtime.app.record_partners(uuid.UUID(second["id"]), "support-1", "operator-1")
    seen_by_partner = intake.get(f"/v1/projects/{second['id']}", headers=mine).json()
    assert "duplicate_reviews" not in seen_by_partner and "person_id" not in seen_by_partner

    settle = f"/v1/projects/{second['id']}/duplicates/{one['person_id']}"
    for role in ("partner", "funding_officer", "followup_officer", "auditor"):
        who = mine if role == "partner" else bearer(intake.settings, role)
        assert intake.post(f"{settle}/confirm", headers=who).status_code == 403, role
    unknown = intake.post(f"/v1/projects/{second['id']}/duplicates/{uuid.uuid4()}/confirm", headers=intake.officer)
    assert unknown.status_code == 404
    unflagged = intake.post(f"/v1/projects/{first['id']}/duplicates/{two['person_id']}/confirm", headers=intake.officer)
    assert unflagged.status_code == 409 and unflagged.json()["rule"] == "duplicate_was_flagged"
    assert intake.post(f"{settle}/undo", headers=intake.officer).json()["rule"] == "duplicate_review_in_order"

    confirmed = intake.post(f"{settle}/confirm", headers=intake.officer)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "closed", "one person, one aid: the later dossier is closed"
    two = intake.get(f"/v1/projects/{second['id']}", headers=intake.officer).json()
    assert two["closure_reason"] == "duplicate_aid" and two["duplicate_reviews"][0]["status"] == "confirmed"
    assert [t["type"] for t in two["timeline"]][-2:] == ["DuplicateConfirmed", "ProjectClosed"]
    assert intake.get(f"/v1/projects/{first['id']}", headers=intake.officer).json()["status"] == "eligible"
    app = intake.app.state.runtime.app
    from services.intake.domain import Person

    persons = [app.find(Person, uuid.UUID(p)) for p in (one["person_id"], two["person_id"])]
    assert persons[0].same_as == [two["person_id"]] and persons[1].same_as == [one["person_id"]]

    undone = intake.post(f"{settle}/undo", headers=intake.officer)
    assert undone.status_code == 200 and undone.json()["status"] == "closed", "an ended dossier never reopens"
    persons = [app.find(Person, uuid.UUID(p)) for p in (one["person_id"], two["person_id"])]
    assert persons[0].same_as == persons[1].same_as == [], "both persons are restored"
    dismissed = intake.post(f"{settle}/dismiss", headers=intake.officer)
    assert dismissed.status_code == 200
    assert intake.get(f"/v1/projects/{second['id']}", headers=intake.officer).json()[
        "duplicate_reviews"][0]["status"] == "dismissed"


def test_forgetting_a_person_forgets_every_record_merged_with_theirs(intake):
    first_body = body()
    second_body = copy.deepcopy(first_body)
    second_body["promoter"]["phone"] = "+33 7 00 00 00 02"
    first = intake.post("/v1/projects", json=first_body, headers=intake.officer).json()
    second = intake.post("/v1/projects", json=second_body, headers=intake.officer).json()
    one, two = (intake.get(f"/v1/projects/{p['id']}", headers=intake.officer).json()["person_id"]
                for p in (first, second))
    settle = f"/v1/projects/{second['id']}/duplicates/{one}"
    assert intake.post(f"{settle}/confirm", headers=intake.officer).status_code == 200
    app = intake.app.state.runtime.app
    before = app.recorder.max_notification_id()
    admin = bearer(intake.settings, "admin", sub="dpo")
    why = {"reason": "objection", "note": "letter RGPD-78"}
    assert intake.post(f"/v1/persons/{two}/forget", headers=admin, json=why).status_code == 204
    forgotten = [n for n in app.recorder.select_notifications(before + 1, 100) if n.topic.endswith("PersonForgotten")]
    assert sorted(str(n.originator_id) for n in forgotten) == sorted([one, two]), "a PersonForgotten per record"
    for person in (one, two):
        assert app.recorder.find_data_key(person) is None and identifiers_of(intake, person) == [], person
    for project in (first, second):
        assert intake.get(f"/v1/projects/{project['id']}", headers=intake.officer).json()["promoter"] is None

    # Undoing the merge brings nothing back; each record is forgotten once.
    assert intake.post(f"{settle}/undo", headers=intake.officer).status_code == 200
    assert intake.get(f"/v1/projects/{first['id']}", headers=intake.officer).json()["promoter"] is None
    again = intake.post(f"/v1/persons/{one}/forget", headers=admin, json=why)
    assert again.status_code == 409 and again.json()["rule"] == "forget_once"


def submission(**changes) -> dict:
    """The keyword arguments of `submit_project` for a new identity (its own name and phone)."""
    b = body(**{"promoter.phone": f"+33 6 {uuid.uuid4().int % 10**8:08d}", **changes})
    return b


def test_a_dossier_taken_in_while_another_of_the_same_identity_is_saved_is_flagged(intake, monkeypatch):
    """Deterministic: A reads the identifiers' matches (none), B of the same identity is saved meanwhile;
    A's save is refused by the store and A, taken in again, is flagged with B's person record."""
    app = intake.app.state.runtime.app
    same = submission()
    read, meanwhile, matches = [], [], app.vault.matches

    def b_saved_meanwhile(identifiers):
        found = matches(identifiers)
        read.append(found)
        if len(read) == 1:
            meanwhile.append(app.submit_project(**same))
        return found

    monkeypatch.setattr(app.vault, "matches", b_saved_meanwhile)
    a = app.submit_project(**same)
    assert [r["person_id"] for r in a.duplicate_reviews.values()] == [str(meanwhile[0].person_id)]
    assert len(read) == 3, "A read, B read, A read again"


def test_two_dossiers_of_one_identity_taken_in_at_the_same_moment_do_not_miss_each_other(intake):
    import threading

    app = intake.app.state.runtime.app
    for _ in range(4):
        same, start, taken = submission(), threading.Barrier(2), []

        def take_in() -> None:
            start.wait()
            taken.append(app.submit_project(**same))

        threads = [threading.Thread(target=take_in) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(taken) == 2
        flagged = [p for p in taken if p.duplicate_reviews]
        assert len(flagged) == 1, "one of the two (the later saved) names the other's person record"
        other = next(p for p in taken if p is not flagged[0])
        assert list(flagged[0].duplicate_reviews) == [str(other.person_id)]


def test_consent_purposes_are_a_closed_list(intake):
    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    wrong = intake.post(f"/v1/projects/{created['id']}/consent", headers=intake.officer,
                        json={"purposes": ["marketing"], "partners": []})
    assert wrong.status_code == 422 and wrong.headers["content-type"] == "application/problem+json"
    right = intake.post(f"/v1/projects/{created['id']}/consent", headers=intake.officer,
                        json={"purposes": ["funding", "statistics"], "partners": []})
    assert right.status_code == 200, right.text
    schema = intake.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["ConsentPurpose"]["enum"]) == {"funding", "follow_up", "preparation", "statistics"}


def test_followups_opening_puts_the_dossier_in_follow_up_once(intake):
    from datetime import datetime, timezone

    from eventsourcing.persistence import Tracking

    from services.intake import consumers
    from shared.envelope import CloudEvent
    from shared.store import processing

    created = intake.post("/v1/projects", json=body(), headers=intake.officer).json()
    project_id = uuid.UUID(created["id"])
    app = intake.app.state.runtime.app
    app.record_partners(project_id, "support-1", "operator-1")
    app.record_consent(project_id, ["funding"], [])
    app.record_business_plan(project_id, [{"label": "stock", "amount_cents": 400_000}], 100_000, 2)
    app.request_feasibility_study(project_id)
    app.complete_feasibility_study(project_id, "feasible", "ok")
    app.send_to_committee(project_id)
    handle = consumers.handler(app)

    def deliver(offset: int) -> None:
        event = CloudEvent(
            specversion="1.0", id=str(uuid.uuid4()), source="/passerelle/followup",
            type="passerelle.followup.FollowUpOpened.v1", subject=str(project_id), time=datetime.now(timezone.utc),
            data={"project_id": str(project_id), "opened_on": "2026-01-10", "visits": []}, sequence=offset,
            aggregateversion=6, actor="service:followup", correlationid=str(project_id),
            causationid=str(project_id), leafhash="0" * 64,
        )
        with processing(Tracking("followup.events:0", offset)) as state:
            handle(event)
            if not state.recorded:
                app.save()

    deliver(0)
    written = stored_events(intake)
    deliver(1)  # the same opening, redelivered under another offset: nothing new
    assert stored_events(intake) == written
    shown = intake.get(f"/v1/projects/{project_id}", headers=intake.officer).json()
    assert shown["status"] == "in_followup"
    assert shown["timeline"][-1]["type"] == "FollowUpRecorded"
    intake.app.state.runtime.projector.catch_up()
    listed = intake.get("/v1/projects", params={"status": "in_followup"}, headers=intake.officer).json()["items"]
    assert [p["id"] for p in listed] == [str(project_id)]


def test_the_demonstrations_second_aid_is_flagged_then_confirmed_by_an_officer(intake, monkeypatch):
    from deploy import seed

    monkeypatch.setattr(seed, "DOSSIERS", [seed.DOSSIERS[0], seed.DOSSIERS[seed.SECOND_AID]])
    monkeypatch.setattr(seed, "SECOND_AID", 1)
    seeder = seed.Seeder.__new__(seed.Seeder)
    seeder.headers, seeder.http = intake.officer, intake  # the test client answers any URL
    first, second = seeder.dossiers()
    assert seeder.dossiers() == [first, second], "seeding again replays the same requests"
    one = intake.get(f"/v1/projects/{first}", headers=intake.officer).json()
    two = intake.get(f"/v1/projects/{second}", headers=intake.officer).json()
    assert one["status"] == "eligible" and two["status"] == "closed" and two["closure_reason"] == "duplicate_aid"
    assert two["duplicate_reviews"][0]["person_id"] == one["person_id"]
    assert [t["type"] for t in two["timeline"]][1:] == ["PossibleDuplicateFlagged", "EligibilityAssessed",
                                                        "DuplicateConfirmed", "ProjectClosed"]


def test_persons_taken_in_before_duplicate_detection_are_indexed_once_by_an_admin(intake):
    from services.intake.domain import Person, Project

    app = intake.app.state.runtime.app
    earlier = body()

    def taken_in_before(promoter: dict) -> Person:
        """As intake stored a person then: the events and the key, no identifiers' hashes."""
        person = Person(person_id=uuid.uuid4())
        sealed = app.vault.seal(person.id, promoter, new_person=True)
        project = Project(reference="PAS-2025-OLD", person_id=person.id, promoter_ciphertext=sealed.ciphertext,
                          country="SN", french_region="FR-IDF", sector="trade", title="t", description="",
                          requested_amount_cents=1, own_contribution_cents=0, planned_jobs=1)
        person.open_dossier(project.id)
        app.save(project, person, data_keys=[sealed.new_key])
        return person

    person = taken_in_before(earlier["promoter"])
    forgotten = taken_in_before(body()["promoter"])
    app.forget_person(forgotten.id, "entered_in_error")
    first = intake.post("/v1/projects", json=earlier, headers=intake.officer).json()
    assert intake.get(f"/v1/projects/{first['id']}", headers=intake.officer).json()["duplicate_reviews"] == []

    admin = bearer(intake.settings, "admin")
    assert intake.post("/v1/persons/index", headers=intake.officer).status_code == 403
    assert intake.post("/v1/persons/index", headers=admin).json() == {"indexed": 1}, "the forgotten one is skipped"
    assert intake.post("/v1/persons/index", headers=admin).json() == {"indexed": 0}
    assert identifiers_of(intake, str(forgotten.id)) == []
    again = intake.post("/v1/projects", json=earlier, headers=intake.officer).json()
    reviews = intake.get(f"/v1/projects/{again['id']}", headers=intake.officer).json()["duplicate_reviews"]
    assert {r["person_id"] for r in reviews} == {str(person.id), intake.get(
        f"/v1/projects/{first['id']}", headers=intake.officer).json()["person_id"]}
