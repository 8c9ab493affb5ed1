"""The Alembic environment every service's `migrations/env.py` runs.

Migrations run online on the connection `shared.projections.migrate` hands over.
"""

from __future__ import annotations

from alembic import context


def run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=context.config.attributes.get("metadata"), render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
