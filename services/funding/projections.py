"""Funding's read models: the ledger of public-funds decisions, and the list of envelopes.

A decision never changes once taken, so the ledger only ever gains rows: the
ledger "as of" a moment is exactly the rows decided at or before it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Index, Integer, String, Table, Text, update

from shared import ledger
from shared.projections import Projection, UtcDateTime, views_metadata
from shared.store import event_metadata

metadata = views_metadata()

decisions = Table(
    "decisions_v1", metadata,
    Column("id", String(80), primary_key=True),  # <aggregate id>/<version>: the event's place
    Column("kind", String(40), nullable=False),  # the event's name
    Column("project_id", String(36), nullable=True),
    Column("envelope_id", String(36), nullable=True),
    Column("amount_cents", BigInteger, nullable=True),
    Column("decided_by", String(200), nullable=False),  # the actor: user:<id> | service:<name>
    Column("decided_at", UtcDateTime(), nullable=False),
    Column("rule_version", String(40), nullable=True),
    Column("justification", Text, nullable=True),
    Column("details", Text, nullable=False),  # JSON: the event's other fields
    Column("code_version", String(80), nullable=True),
    Index("ix_decisions_v1_decided", "decided_at", "id"),
    Index("ix_decisions_v1_project", "project_id"),
    Index("ix_decisions_v1_envelope", "envelope_id"),
)

envelopes = Table(
    "envelopes_v1", metadata,
    Column("id", String(36), primary_key=True),
    Column("purpose", String(30), nullable=False),
    Column("year", Integer, nullable=False),
    Column("scope", String(20), nullable=False),  # a country code or "programme"
    Column("allocated_cents", BigInteger, nullable=False),
    Column("reserved_cents", BigInteger, nullable=False),
    Column("disbursed_cents", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_envelopes_v1_year", "year", "scope"),
)

_NOT_DETAILS = {"amount_cents", "rule_version", "justification", "envelope_id", "originator_id",
                "originator_version", "timestamp", "_meta", "countries", "return_aid"}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Ledger(Projection):
    """Every decision on public money, made into an entry by the rule the audit also rebuilds it by
    from Kafka (`shared.ledger`)."""

    name = "decisions_v1"
    tables = (decisions,)

    def apply(self, conn: Connection, e: Any) -> None:
        state = vars(e)
        meta = event_metadata(e)
        entry = ledger.entry(type(e).__name__, str(e.originator_id), e.originator_version, state, meta.get("actor"),
                             e.timestamp, meta.get("codeversion"))
        if entry is None:
            return
        conn.execute(decisions.insert().values(
            **entry,
            details=json.dumps(_plain({k: v for k, v in state.items() if k not in _NOT_DETAILS}), sort_keys=True),
        ))


class Envelopes(Projection):
    name = "envelopes_v1"
    tables = (envelopes,)

    def apply(self, conn: Connection, e: Any) -> None:
        if not type(e).__qualname__.startswith("Envelope."):
            return
        kind = type(e).__name__
        row = str(e.originator_id)
        changes: dict[str, Any] = {"updated_at": e.timestamp, "version": e.originator_version}
        if kind == "EnvelopeOpened":
            conn.execute(envelopes.insert().values(
                id=row, purpose=e.purpose, year=e.year, scope=e.scope, allocated_cents=e.amount_cents,
                reserved_cents=0, disbursed_cents=0, **changes))
            return
        c = envelopes.c
        if kind == "EnvelopeAdjusted":
            changes["allocated_cents"] = e.amount_cents
        elif kind == "EnvelopeFundsReserved":
            changes["reserved_cents"] = c.reserved_cents + e.amount_cents
        elif kind == "EnvelopeFundsReleased":
            changes["reserved_cents"] = c.reserved_cents - e.amount_cents
        elif kind == "EnvelopeFundsDisbursed":
            changes["disbursed_cents"] = c.disbursed_cents + e.amount_cents
            if e.from_reserved:
                changes["reserved_cents"] = c.reserved_cents - e.amount_cents
        conn.execute(update(envelopes).where(c.id == row).values(**changes))


PROJECTIONS = [Ledger(), Envelopes()]
