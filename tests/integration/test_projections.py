"""Read models: migrated by Alembic to exactly the declared schema, and rebuilt to the same rows."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from services.intake.main import build
from shared.projections import migrate, views_engine
from tests.integration.test_intake_api import body

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["intake", "partners", "followup"])
def test_migrations_give_exactly_the_declared_schema(service, make_settings):
    settings = make_settings(service)
    projections = importlib.import_module(f"services.{service}.projections")
    main = importlib.import_module(f"services.{service}.main")
    engine = views_engine(settings)
    migrate(engine, main.MIGRATIONS)
    migrate(engine, main.MIGRATIONS)  # twice: idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), projections.metadata)
    assert diff == [], f"the migrations and the tables of services/{service}/projections.py differ: {diff}"
    engine.dispose()


def test_a_dropped_projection_is_rebuilt_with_the_same_rows(make_settings):
    settings = make_settings("intake")
    runtime = build(settings)
    app, projector = runtime.app, runtime.projector
    try:
        ids = []
        for _ in range(6):
            b = body()
            project = app.submit_project(promoter=b["promoter"], **{k: v for k, v in b.items() if k != "promoter"})
            ids.append(project.id)
        app.record_partners(ids[0], "support-1", "operator-1")
        app.complete_skills_review(ids[0], "good")
        app.withdraw(ids[1], "changed plans")
        projector.catch_up()
        from services.intake.projections import dossiers

        def rows():
            with projector.engine.connect() as conn:
                return [dict(r) for r in conn.execute(select(dossiers).order_by(dossiers.c.id)).mappings()]

        before = rows()
        assert {r["status"] for r in before} == {"preparing", "withdrawn", "eligible"}
        applied = projector.rebuild("dossiers_v1")
        assert applied == app.recorder.count_notifications(app.recorder.max_notification_id())
        assert rows() == before
        assert projector.position("dossiers_v1") == app.recorder.max_notification_id()
        assert projector.catch_up() == 0, "nothing is applied twice"
    finally:
        projector.engine.dispose()
        app.close()
