"""Alembic environment of partners' read models (run by shared.projections.migrate)."""

from shared.migrations import run

run()
