"""Schemathesis against each service's own OpenAPI document, on the service as a real process
(PostgreSQL, Kafka), with a token of each role, and without one.

The checks: no 5xx, every status code documented, responses and their content types as the
document says, invalid data refused. A positive case that a rule refuses (409: the dossier is not
in the state the command needs, the envelope has no money left) is a documented answer, not a
failure: every command route declares its 409, and positive_data_acceptance, the one check that
would call it a failure, is not among the checks. The run counts those 409s apart from the
others (`refused by a rule (409)` in its summary). Each run has a fixed seed and a bounded
number of examples per operation, so that all services together take a few minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import bearer

pytestmark = [pytest.mark.e2e, pytest.mark.proofs]

SEED = 20260401
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
          "negative_data_rejection")
ROLES = ("intake_officer", "funding_officer", "funding_approver", "followup_officer", "auditor", "admin", "partner")
ANONYMOUS = "anonymous"  # no token at all: 401 on every route but health, readiness, metrics and keys
# The roles a service serves: many examples, with the coverage phase (every boundary, every
# invalid type). Every other role is refused almost everywhere, which a few examples show.
SERVED_BY = {
    "intake": {"intake_officer", "partner", "admin"},
    "partners": {"intake_officer", "partner", "admin"},
    "funding": {"funding_officer", "funding_approver", "admin"},
    "followup": {"followup_officer", "partner", "admin"},
    "audit": {"auditor", "admin"},
}
SERVED_EXAMPLES, OTHER_EXAMPLES = 25, 3
PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/keys"}  # answered without a token
PARTNER_ID = "7d0c5d40-3c4b-4a8e-9d35-7d6d3f0a1b2c"  # a partner the service does not know


def schemathesis(url: str, authorization: str | None, served: bool, report: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", ",".join(CHECKS), "--seed", str(SEED),
        "--max-examples", str(SERVED_EXAMPLES if served else OTHER_EXAMPLES),
        "--phases", "examples,coverage,fuzzing" if served else "examples,fuzzing",
        "--workers", "1", "--no-color", "--generation-database", "none", "--suppress-health-check", "all",
        "--request-timeout", "20", "--continue-on-failure",
        *(("--header", f"Authorization:{authorization}") if authorization else ()),
        # Readiness takes no input, and its 503 is what it is for: a relay restarting, a consumer
        # lagging under the load of the run itself. It is not a server error of the fuzzed input.
        "--exclude-path", "/readyz",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, cwd=report.parent)


def read_report(report: Path) -> tuple[Counter, dict[tuple[str, ...], str]]:
    """The cases the run generated (counted by mode and answer) and its distinct failures
    (operation, check, what was wrong) with one request that shows each."""
    counts: Counter = Counter()
    failures: dict[tuple[str, ...], str] = {}
    for line in report.read_text().splitlines():
        event = json.loads(line)
        if "ScenarioFinished" not in event:
            continue
        recorder = event["ScenarioFinished"]["recorder"]
        for case_id, case in recorder.get("cases", {}).items():
            mode = case["value"]["meta"]["generation"]["mode"]
            response = (recorder.get("interactions", {}).get(case_id) or {}).get("response") or {}
            status = response.get("status_code")
            counts["cases"] += 1
            counts[mode] += 1
            if status is not None and 200 <= status < 300 and recorder["label"].split()[-1] not in PUBLIC:
                counts["2xx behind a token"] += 1
            if mode == "positive" and status is not None:
                counts["positive, answered 2xx" if 200 <= status < 300 else
                       "positive, refused by a rule" if status == 409 else "positive, other answer"] += 1
            for check in recorder.get("checks", {}).get(case_id, []):
                if check["status"] == "failure":
                    failure = check["failure_info"]["failure"]
                    key = (failure["operation"], str(status), check["name"], failure["title"],
                           failure["message"].splitlines()[0] if failure["message"] else "")
                    request = case["value"]
                    failures.setdefault(key, json.dumps(
                        {k: request[k] for k in ("method", "path", "query", "body", "path_parameters")
                         if request.get(k) is not None}, default=str)[:300])
    return counts, failures


@pytest.mark.parametrize("service", sorted(SERVED_BY))
def test_schemathesis_finds_nothing_wrong(service, start_service, tmp_path, proof_summary):
    process = start_service(service)
    process.wait_ready()
    lines, found, total = [], {}, Counter()
    for role in (*ROLES, ANONYMOUS):
        token = None if role == ANONYMOUS else bearer(process.settings, role, sub=f"schemathesis-{role}",
                                                      partner_id=PARTNER_ID if role == "partner" else None
                                                      )["Authorization"]
        report = tmp_path / f"{role}.ndjson"
        result = schemathesis(process.url, token, role in SERVED_BY[service], report)
        (tmp_path / f"{role}.out").write_text(result.stdout + result.stderr)
        assert report.exists(), f"schemathesis did not run ({role}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        counts, failures = read_report(report)
        assert counts["cases"], f"schemathesis generated nothing ({role}):\n{result.stdout[-2000:]}"
        total += counts
        if role in SERVED_BY[service]:  # else a token the service refuses would pass unnoticed
            assert counts["2xx behind a token"], f"{service} as {role}: no 2xx beyond the public routes"
        lines.append(f"{service} as {role}: {counts['cases']} cases generated ({counts['positive']} positive: "
                     f"{counts['positive, answered 2xx']} answered 2xx, {counts['positive, refused by a rule']} "
                     f"refused by a rule (409), {counts['positive, other answer']} answered otherwise; "
                     f"{counts['negative']} negative), {len(failures)} failures")
        for key, example in failures.items():
            found.setdefault(key, (role, example))
    proof_summary.append(f"schemathesis {service}: {total['cases']} cases generated ({total['positive']} positive, "
                         f"{total['positive, refused by a rule']} of them refused by a rule), {len(found)} failures")
    print("\n".join(["", *lines, proof_summary[-1]]))
    assert not found, f"{len(found)} distinct failures:\n" + "\n".join(
        f"{' | '.join(key)} | as {role}: {example}" for key, (role, example) in sorted(found.items()))
