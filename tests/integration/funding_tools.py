"""What the funding tests share: other services' records as they would publish them."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timezone
from typing import Any

from services.funding.application import example_rules
from shared.envelope import record_from_state
from tests.integration.kafka_tools import produce, run

_sequence = itertools.count()


def record(service: str, name: str, subject: str, aggregate_version: int, **data: Any) -> tuple[bytes, bytes]:
    """A CloudEvent record of `service`, built the way its relay builds them."""
    state = {**data, "timestamp": datetime.now(timezone.utc),
             "_meta": {"actor": f"service:{service}", "correlationid": subject, "causationid": subject,
                       "codeversion": "test"}}
    _, value = record_from_state(service, name, 1, subject, aggregate_version, state, next(_sequence))
    return subject.encode(), value


def publish(settings: Any, service: str, records: list[tuple[bytes, bytes]]) -> None:
    run(produce(settings.kafka_bootstrap_servers, settings.topic(f"{service}.events"), records))


def eligible(project_id: str, country: str = "SN") -> tuple[bytes, bytes]:
    return record("intake", "EligibilityAssessed", project_id, 2, eligible=True, reasons=[],
                  rule_version="default-2026.1", country=country, french_region="FR-IDF", sector="trade")


def study_requested(project_id: str, operator: str = "operator-1") -> tuple[bytes, bytes]:
    return record("intake", "FeasibilityStudyRequested", project_id, 6, local_operator_id=operator)


def sent_to_committee(project_id: str, requested: int = 650_000, version: int = 8) -> tuple[bytes, bytes]:
    return record("intake", "ProjectSentToCommittee", project_id, version, requested_amount_cents=requested,
                  own_contribution_cents=100_000, planned_jobs=3)


def alert(name: str, project_id: str, alert_id: str, version: int) -> tuple[bytes, bytes]:
    return record("followup", name, project_id, version, alert_id=alert_id, reason="business in difficulty")


def person_known(person_id: str, project_id: str | None = None) -> tuple[bytes, bytes]:
    """Intake's ProjectSubmitted of a dossier of the person (the promoter's data: ciphertext only)."""
    return record("intake", "ProjectSubmitted", project_id or new_project(), 1, reference="PAS-T",
                  person_id=person_id, promoter_ciphertext="v1.c2VjcmV0", country="SN", french_region="FR-IDF",
                  sector="trade", title="t", description="", requested_amount_cents=650_000,
                  own_contribution_cents=100_000, planned_jobs=3)


def persons_merged(person_id: str, other_person_id: str, version: int, merged: bool = True) -> tuple[bytes, bytes]:
    """Intake's PersonsMerged (or PersonsUnmerged) of a person record: an officer confirmed (or undid) a duplicate."""
    return record("intake", "PersonsMerged" if merged else "PersonsUnmerged", person_id, version,
                  other_person_id=other_person_id)


def new_project() -> str:
    return str(uuid.uuid4())


def rules_body(version: str | None = None) -> dict[str, Any]:
    body = example_rules()
    if version:
        body["version"] = version
    return body
