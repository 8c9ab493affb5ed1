"""Followup's read models.

- `followups_v1`: each dossier's follow-up as it stands, for lists and filters
  (country, local operator, year the follow-up opened);
- `planned_visits_v1`: every planned visit with its due date, whether it was
  done and the due date it was flagged overdue for: the overdue scheduler
  reads it to know which dossiers to look at;
- `followup_facts_v1`: every event of every follow-up with its time, so that the
  indicators can be computed as they stood at any past moment (`as_of`).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import (
    Column, Connection, Date, Index, Integer, String, Table, Text, delete, update,
)

from shared.envelope import plain
from shared.projections import Projection, UtcDateTime, views_metadata
from shared.store import META

metadata = views_metadata()

followups = Table(
    "followups_v1", metadata,
    Column("project_id", String(36), primary_key=True),
    Column("stage", String(20), nullable=False),
    Column("country", String(2), nullable=True),
    Column("local_operator_id", String(36), nullable=True),
    Column("opened_on", Date, nullable=True),
    Column("opened_year", Integer, nullable=True),
    Column("launched_on", Date, nullable=True),
    Column("visits_done", Integer, nullable=False),
    Column("visits_overdue", Integer, nullable=False),
    Column("open_alert_id", String(36), nullable=True),
    Column("conflicts", Integer, nullable=False),
    Column("outcome", String(30), nullable=True),
    Column("jobs_created", Integer, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_followups_v1_country_year", "country", "opened_year"),
    Index("ix_followups_v1_local_operator", "local_operator_id"),
    Index("ix_followups_v1_stage", "stage"),
)

planned_visits = Table(
    "planned_visits_v1", metadata,
    Column("project_id", String(36), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("month", Integer, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("done", Integer, nullable=False),  # 0 | 1, the same on SQLite and PostgreSQL
    # The due date this visit was last flagged overdue for (a launch dates the plan again).
    Column("flagged_due_on", Date, nullable=True),
    Index("ix_planned_visits_v1_watch", "done", "due_on"),
)

facts = Table(
    "followup_facts_v1", metadata,
    Column("project_id", String(36), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("data", Text, nullable=False),  # the event's fields, JSON
    Index("ix_followup_facts_v1_at", "at"),
)

_NOT_DATA = {"originator_id", "originator_version", "timestamp", "originator_topic", "class_version", META}


def event_data(e: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in vars(e).items() if k not in _NOT_DATA}


def _plan(conn: Connection, project_id: str, visits: list[dict[str, Any]]) -> None:
    """Replace the not-yet-done planned visits with the plan's (new) dates."""
    done = {n for (n,) in conn.execute(planned_visits.select().with_only_columns(planned_visits.c.number)
                                       .where(planned_visits.c.project_id == project_id,
                                              planned_visits.c.done == 1))}
    conn.execute(delete(planned_visits).where(planned_visits.c.project_id == project_id, planned_visits.c.done == 0))
    rows = [{"project_id": project_id, "number": v["number"], "month": v["month"],
             "due_on": date.fromisoformat(v["due_on"]), "done": 0, "flagged_due_on": None}
            for v in visits if v["number"] not in done]
    if rows:
        conn.execute(planned_visits.insert(), rows)


class FollowUps(Projection):
    """Each dossier's follow-up, and its planned visits for the overdue scheduler."""

    name = "followups_v1"
    tables = (followups, planned_visits)

    def apply(self, conn: Connection, e: Any) -> None:
        if not type(e).__qualname__.startswith("FollowUp."):
            return
        kind = type(e).__name__
        row_id = str(e.originator_id)
        changes: dict[str, Any] = {"updated_at": e.timestamp, "version": e.originator_version}
        row = followups.c
        if kind == "DossierNoted":
            conn.execute(followups.insert().values(project_id=row_id, stage="awaiting_funds", visits_done=0,
                                                   visits_overdue=0, conflicts=0, **changes))
            return
        if kind == "SubmissionNoted":
            changes["country"] = e.country
        elif kind == "LocalOperatorNoted":
            changes["local_operator_id"] = e.local_operator_id
        elif kind == "FollowUpOpened":
            opened_on = date.fromisoformat(e.opened_on)
            changes.update(stage="opened", opened_on=opened_on, opened_year=opened_on.year)
            _plan(conn, row_id, e.visits)
        elif kind == "BusinessLaunched":
            changes.update(stage="launched", launched_on=date.fromisoformat(e.launched_on))
            _plan(conn, row_id, e.visits)
        elif kind == "FollowUpVisitLogged":
            if e.visit_number is not None:
                changes["visits_done"] = row.visits_done + 1
                conn.execute(update(planned_visits).where(planned_visits.c.project_id == row_id,
                                                          planned_visits.c.number == e.visit_number)
                             .values(done=1))
        elif kind == "VisitConflictRecorded":
            changes["conflicts"] = row.conflicts + 1
        elif kind == "VisitConflictResolved":
            changes["conflicts"] = row.conflicts - 1
        elif kind == "FollowUpVisitOverdue":
            changes["visits_overdue"] = row.visits_overdue + 1
            conn.execute(update(planned_visits).where(planned_visits.c.project_id == row_id,
                                                      planned_visits.c.number == e.visit_number)
                         .values(flagged_due_on=date.fromisoformat(e.due_on)))
        elif kind == "AlertRaised":
            changes["open_alert_id"] = e.alert_id
        elif kind == "AlertResolved":
            changes["open_alert_id"] = None
        elif kind == "FollowUpCompleted":
            changes.update(stage="completed", outcome=e.outcome, jobs_created=e.jobs_created)
            # Nothing more falls due once the follow-up is over.
            conn.execute(delete(planned_visits).where(planned_visits.c.project_id == row_id,
                                                      planned_visits.c.done == 0))
        conn.execute(update(followups).where(row.project_id == row_id).values(**changes))


class Facts(Projection):
    """Every follow-up event with its time: the indicators, as of any moment, are computed from them."""

    name = "followup_facts_v1"
    tables = (facts,)

    def apply(self, conn: Connection, e: Any) -> None:
        if not type(e).__qualname__.startswith("FollowUp."):
            return
        conn.execute(facts.insert().values(project_id=str(e.originator_id), version=e.originator_version,
                                           kind=type(e).__name__, at=e.timestamp,
                                           data=json.dumps(event_data(e), sort_keys=True)))


PROJECTIONS = [FollowUps(), Facts()]
