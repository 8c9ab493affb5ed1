"""Alembic environment of funding's read models (run by shared.projections.migrate)."""

from shared.migrations import run

run()
