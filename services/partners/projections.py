"""Partners' read models: the network (with each partner's caseload) and the assignments.

Lists (countries, sectors, missing roles) are JSON text, the same on SQLite and
PostgreSQL; a country filter matches its quoted code in that text.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import Boolean, Column, Connection, Date, Index, Integer, String, Table, Text, update

from shared.projections import Projection, UtcDateTime, views_metadata

metadata = views_metadata()

partners = Table(
    "partners_v1", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("region", String(10), nullable=True),
    Column("countries", Text, nullable=False),  # JSON list of ISO 3166-1 alpha-2 codes
    Column("sectors", Text, nullable=False),  # JSON list of normalised sectors
    Column("capacity", Integer, nullable=False),
    # Dossiers the partner follows now: assigned and not ended.
    Column("caseload", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("agreement", String(200), nullable=True),
    Column("accredited_from", Date, nullable=True),
    Column("accredited_until", Date, nullable=True),
    Column("feed_enabled", Boolean, nullable=False),
    Column("registered_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_partners_v1_kind", "kind"),
    Index("ix_partners_v1_region", "region"),
    Index("ix_partners_v1_status", "status"),
    Index("ix_partners_v1_registered", "registered_at", "id"),
)

assignments = Table(
    "assignments_v1", metadata,
    Column("project_id", String(36), primary_key=True),
    # requested (for the instant between a request and its outcome) | pending | assigned | ended
    Column("status", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("french_region", String(10), nullable=False),
    Column("sector", String(60), nullable=False),
    Column("support_structure_id", String(36), nullable=True),
    Column("local_operator_id", String(36), nullable=True),
    Column("sector_matched", Boolean, nullable=True),
    Column("missing", Text, nullable=False),  # JSON list of the roles still without a partner
    Column("end_reason", String(200), nullable=True),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_assignments_v1_status", "status"),
    Index("ix_assignments_v1_support_structure", "support_structure_id"),
    Index("ix_assignments_v1_local_operator", "local_operator_id"),
    Index("ix_assignments_v1_requested", "requested_at", "project_id"),
)


def as_list(text: str | None) -> list[str]:
    return list(json.loads(text)) if text else []


def _json(values: list[str]) -> str:
    return json.dumps(list(values))


def _change_caseload(conn: Connection, partner_ids: list[str | None], by: int) -> None:
    for partner_id in partner_ids:
        if partner_id is not None:
            conn.execute(update(partners).where(partners.c.id == partner_id)
                         .values(caseload=partners.c.caseload + by))


class Partners(Projection):
    """The network, filterable by kind, country, region and status, with each partner's caseload."""

    name = "partners_v1"
    tables = (partners,)

    def apply(self, conn: Connection, e: Any) -> None:
        kind = type(e).__name__
        qualname = type(e).__qualname__
        if qualname.startswith("Assignment."):
            if kind == "PartnersAssigned":
                _change_caseload(conn, [e.support_structure_id, e.local_operator_id], +1)
            elif kind == "AssignmentEnded":
                _change_caseload(conn, [e.support_structure_id, e.local_operator_id], -1)
            return
        if not qualname.startswith("Partner."):
            return
        row_id = str(e.originator_id)
        changes: dict[str, Any] = {"updated_at": e.timestamp, "version": e.originator_version}
        if kind == "PartnerRegistered":
            conn.execute(partners.insert().values(
                id=row_id, name=e.name, kind=e.kind, region=e.region, countries=_json(e.countries),
                sectors=_json(e.sectors), capacity=e.capacity, caseload=0, status="active", feed_enabled=False,
                registered_at=e.timestamp, **changes,
            ))
            return
        if kind == "PartnerAccredited":
            changes.update(agreement=e.agreement, accredited_from=date.fromisoformat(e.valid_from),
                           accredited_until=date.fromisoformat(e.valid_to))
        elif kind == "PartnerCoverageChanged":
            changes.update(region=e.region, countries=_json(e.countries), sectors=_json(e.sectors),
                           capacity=e.capacity)
        elif kind == "PartnerSuspended":
            changes["status"] = "suspended"
        elif kind == "PartnerReinstated":
            changes["status"] = "active"
        elif kind == "PartnerFeedEnabled":
            changes["feed_enabled"] = True
        conn.execute(update(partners).where(partners.c.id == row_id).values(**changes))


class Assignments(Projection):
    """Each dossier's assignment: pending with the missing roles, assigned with its partners, or ended."""

    name = "assignments_v1"
    tables = (assignments,)

    def apply(self, conn: Connection, e: Any) -> None:
        kind = type(e).__name__
        if not type(e).__qualname__.startswith("Assignment."):
            return
        row_id = str(e.originator_id)
        changes: dict[str, Any] = {"updated_at": e.timestamp, "version": e.originator_version}
        if kind == "AssignmentRequested":
            conn.execute(assignments.insert().values(
                project_id=row_id, status="requested", country=e.country, french_region=e.french_region,
                sector=e.sector, missing=_json([]), requested_at=e.timestamp, **changes,
            ))
            return
        if kind == "AssignmentPending":
            changes.update(status="pending", missing=_json(e.missing))
        elif kind == "PartnersAssigned":
            changes.update(status="assigned", missing=_json([]), support_structure_id=e.support_structure_id,
                           local_operator_id=e.local_operator_id, sector_matched=e.sector_matched)
        elif kind == "AssignmentEnded":
            changes.update(status="ended", missing=_json([]), end_reason=e.reason)
        conn.execute(update(assignments).where(assignments.c.project_id == row_id).values(**changes))


PROJECTIONS = [Partners(), Assignments()]
