"""The AsyncAPI document is the code's: generated, committed, and matching what is published."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml

from services.intake.domain import Conclusion, Project, RuleSet
from shared.asyncapi import document, render
from shared.envelope import build_envelope

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_asyncapi_document_is_up_to_date():
    committed = (ROOT / "asyncapi.yaml").read_text()
    assert committed == render(), "run `python -m shared.asyncapi > asyncapi.yaml` and commit it"


def test_it_is_asyncapi_3_with_every_event_topic():
    doc = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert {"intake.events", "partners.events", "intake.events.dlq"} <= set(doc["channels"])
    for name in ("ProjectSubmitted", "EligibilityAssessed", "PartnersRecorded", "ProjectSentToCommittee"):
        assert name in doc["channels"]["intake.events"]["messages"]
    for name in ("PartnerRegistered", "PartnersAssigned", "AssignmentPending", "PartnerSuspended"):
        assert name in doc["channels"]["partners.events"]["messages"]


def test_published_data_has_exactly_the_documented_fields():
    rules = RuleSet.from_dict({"version": "t", "countries": ["SN"], "default_ceiling_cents": 700_000})
    project = Project(reference="PAS-T", person_id=uuid.uuid4(), promoter_ciphertext="c", country="SN",
                      french_region="FR-IDF", sector="trade", title="t", description="",
                      requested_amount_cents=1, own_contribution_cents=0, planned_jobs=1)
    project.screen(rules)
    project.record_partners("s", "o")
    project.record_consent(["funding"], [])
    project.record_business_plan([{"label": "x", "amount_cents": 1}], 0, 1)
    project.request_feasibility_study()
    project.complete_feasibility_study(Conclusion.feasible, "")
    project.send_to_committee()
    messages = document()["components"]["messages"]
    for sequence, event in enumerate(project.collect_events()):
        envelope = build_envelope("intake", event, sequence)
        schema = messages[f"intake.{type(event).__name__}"]["payload"]["allOf"][1]["properties"]
        assert envelope["type"] == schema["type"]["const"]
        assert set(envelope["data"]) == set(schema["data"]["properties"]), type(event).__name__


def test_a_record_is_checked_against_its_schema_and_a_wrong_one_is_refused():
    import jsonschema
    import orjson
    import pytest

    from shared.envelope import encode
    from tests.contract import validate_record

    project = Project(reference="PAS-T", person_id=uuid.uuid4(), promoter_ciphertext="c", country="SN",
                      french_region="FR-IDF", sector="trade", title="t", description="",
                      requested_amount_cents=1, own_contribution_cents=0, planned_jobs=1)
    envelope = build_envelope("intake", project.collect_events()[0], 0)
    assert validate_record(encode(envelope)) == "passerelle.intake.ProjectSubmitted.v1"
    for broken in ({**envelope["data"], "surprise": 1}, {**envelope["data"], "planned_jobs": "three"},
                   {k: v for k, v in envelope["data"].items() if k != "country"}):
        with pytest.raises(jsonschema.ValidationError):
            validate_record(orjson.dumps({**envelope, "data": broken}))
    with pytest.raises(jsonschema.ValidationError):
        validate_record(orjson.dumps({**envelope, "sequence": -1}))
    for malformed in ({"time": "yesterday"}, {"time": "2026-03-01T12:00:00"},  # no zone
                      {"data": {**envelope["data"], "person_id": "someone"}}):  # formats: date-time, uuid
        with pytest.raises(jsonschema.ValidationError):
            validate_record(orjson.dumps({**envelope, **malformed}))
