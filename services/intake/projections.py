"""Intake's read models: the list of dossiers (filters, cursor pagination)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Connection, Index, Integer, String, Table, bindparam, update

from shared.projections import Projection, UtcDateTime, views_metadata

metadata = views_metadata()

dossiers = Table(
    "dossiers_v1", metadata,
    Column("id", String(36), primary_key=True),
    Column("reference", String(32), nullable=False),
    Column("status", String(20), nullable=False),
    Column("person_id", String(36), nullable=False),
    Column("country", String(2), nullable=False),
    Column("french_region", String(10), nullable=False),
    Column("sector", String(60), nullable=False),
    Column("title", String(200), nullable=False),
    Column("requested_amount_cents", BigInteger, nullable=False),
    Column("eligible", Boolean, nullable=True),
    Column("support_structure_id", String(36), nullable=True),
    Column("local_operator_id", String(36), nullable=True),
    Column("submitted_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    # What funding decided (migration 0002): awarded | rejected, and the amount financed.
    Column("feasibility_grant", String(10), nullable=True),
    Column("financed_amount_cents", BigInteger, nullable=True),
    Index("ix_dossiers_v1_status", "status"),
    Index("ix_dossiers_v1_country", "country"),
    Index("ix_dossiers_v1_submitted", "submitted_at", "id"),
)

# The status each event leaves a dossier in (None: unchanged).
_STATUS_AFTER = {
    "SkillsReviewCompleted": "preparing",
    "TrainingRecorded": "preparing",
    "BusinessPlanRecorded": "preparing",
    "FeasibilityStudyRequested": "feasibility",
    "ProjectSentToCommittee": "at_committee",
    "ProjectWithdrawn": "withdrawn",
    "ProjectClosed": "closed",
    "FollowUpRecorded": "in_followup",
}

_STATUS_AFTER_DECISION = {"approved": "financed", "deferred": "deferred", "rejected": "rejected"}


# Built once: SQLAlchemy then reuses their compiled form, where building a statement per
# event (`.values(...)`) cost more CPU than the database's work.
_insert = dossiers.insert()
_update = update(dossiers).where(dossiers.c.id == bindparam("row_id"))  # SET: the parameters given
_assigned = update(dossiers).where(dossiers.c.id == bindparam("row_id"), dossiers.c.status == "eligible") \
    .values(status="assigned")


class Dossiers(Projection):
    name = "dossiers_v1"
    tables = (dossiers,)

    def apply(self, conn: Connection, e: Any) -> None:
        kind = type(e).__name__
        if not type(e).__qualname__.startswith("Project."):
            return
        row_id = str(e.originator_id)
        changes: dict[str, Any] = {"updated_at": e.timestamp, "version": e.originator_version}
        if kind == "ProjectSubmitted":
            conn.execute(_insert, dict(
                id=row_id, reference=e.reference, status="submitted", person_id=str(e.person_id),
                country=e.country, french_region=e.french_region, sector=e.sector, title=e.title,
                requested_amount_cents=e.requested_amount_cents, eligible=None, support_structure_id=None,
                local_operator_id=None, submitted_at=e.timestamp, **changes,
            ))
            return
        if kind == "EligibilityAssessed":
            changes.update(eligible=e.eligible, status="eligible" if e.eligible else "ineligible")
        elif kind == "PartnersRecorded":
            changes.update(support_structure_id=e.support_structure_id, local_operator_id=e.local_operator_id)
            conn.execute(_assigned, {"row_id": row_id})
        elif kind == "FeasibilityGrantRecorded":
            changes["feasibility_grant"] = e.outcome
        elif kind == "FinancingDecisionRecorded":
            changes["status"] = _STATUS_AFTER_DECISION[e.decision]
            if e.decision == "approved":
                changes["financed_amount_cents"] = e.amount_cents
        elif kind in _STATUS_AFTER:
            changes["status"] = _STATUS_AFTER[kind]
        conn.execute(_update, {"row_id": row_id, **changes})


PROJECTIONS = [Dossiers()]
