"""The ledger of public-funds decisions, as one rule for whoever keeps it.

Funding keeps it from its store (its `decisions_v1` read model); the audit
rebuilds it from `funding.events` on Kafka alone. Both make each entry with
`entry()`, so that comparing the two compares what was recorded, not two
readings of it.
"""

from __future__ import annotations

from typing import Any

# The events that are decisions on public money (or on the rules and budgets they answer to).
DECISIONS = frozenset({
    "ProgrammeRulesPublished", "EnvelopeOpened", "EnvelopeAdjusted",
    "FeasibilityGrantAwarded", "FeasibilityGrantRejected",
    "FinancingProposed", "FinancingApproved", "FinancingDeferred", "FinancingRejected",
    "AgreementSigned", "OperatorFeesCommitted", "FundsDisbursed", "TrancheReconciled",
    "DisbursementSuspended", "DisbursementResumed", "FinancingEnded",
    "ReturnAidProposed", "ReturnAidGranted", "ReturnAidRejected",
})
# The aggregate each decision belongs to, where it is not the dossier.
_AGGREGATE = {"ProgrammeRulesPublished": "Rulebook", "EnvelopeOpened": "Envelope", "EnvelopeAdjusted": "Envelope",
              "ReturnAidProposed": "ReturnAid", "ReturnAidGranted": "ReturnAid", "ReturnAidRejected": "ReturnAid"}
COLUMNS = ("id", "kind", "project_id", "envelope_id", "amount_cents", "decided_by", "decided_at", "rule_version",
           "justification", "code_version")


def entry(kind: str, subject: str, version: int, data: dict[str, Any], actor: str | None,
          decided_at: Any, code_version: str | None) -> dict[str, Any] | None:
    """The ledger's entry for an event of funding (None when it is not a decision)."""
    if kind not in DECISIONS:
        return None
    aggregate = _AGGREGATE.get(kind, "Dossier")
    amount = data.get("amount_cents")
    if kind == "TrancheReconciled":
        amount = data.get("disbursed_cents")
    elif kind == "FinancingEnded":
        amount = data.get("released_cents")
    return {
        "id": f"{subject}/{version}",
        "kind": kind,
        "project_id": subject if aggregate == "Dossier" else None,
        "envelope_id": subject if aggregate == "Envelope" else data.get("envelope_id"),
        "amount_cents": amount,
        "decided_by": actor or "service:funding",
        "decided_at": decided_at,
        "rule_version": data.get("version") if kind == "ProgrammeRulesPublished" else data.get("rule_version"),
        "justification": data.get("justification") or data.get("reason"),
        "code_version": code_version,
    }


def envelope_change(totals: dict[str, dict[str, Any]], kind: str, subject: str, data: dict[str, Any]) -> None:
    """Apply an envelope's event to the totals of every envelope (allocated, reserved, disbursed)."""
    if kind == "EnvelopeOpened":
        totals[subject] = {"id": subject, "purpose": data.get("purpose"), "year": data.get("year"),
                           "scope": data.get("scope"), "allocated_cents": data["amount_cents"],
                           "reserved_cents": 0, "disbursed_cents": 0, "available_cents": data["amount_cents"]}
        return
    envelope = totals.get(subject)
    if envelope is None:
        return
    if kind == "EnvelopeAdjusted":
        envelope["allocated_cents"] = data["amount_cents"]
    elif kind == "EnvelopeFundsReserved":
        envelope["reserved_cents"] += data["amount_cents"]
    elif kind == "EnvelopeFundsReleased":
        envelope["reserved_cents"] -= data["amount_cents"]
    elif kind == "EnvelopeFundsDisbursed":
        envelope["disbursed_cents"] += data["amount_cents"]
        if data.get("from_reserved"):
            envelope["reserved_cents"] -= data["amount_cents"]
    envelope["available_cents"] = envelope["allocated_cents"] - envelope["reserved_cents"] - envelope["disbursed_cents"]
