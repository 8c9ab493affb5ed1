"""the ledger of decisions, the envelopes

Revision ID: 0001
Revises:
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('decisions_v1',
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=True),
    sa.Column('envelope_id', sa.String(length=36), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rule_version', sa.String(length=40), nullable=True),
    sa.Column('justification', sa.Text(), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('code_version', sa.String(length=80), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decisions_v1', schema=None) as batch_op:
        batch_op.create_index('ix_decisions_v1_decided', ['decided_at', 'id'], unique=False)
        batch_op.create_index('ix_decisions_v1_project', ['project_id'], unique=False)
        batch_op.create_index('ix_decisions_v1_envelope', ['envelope_id'], unique=False)

    op.create_table('envelopes_v1',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('purpose', sa.String(length=30), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=20), nullable=False),
    sa.Column('allocated_cents', sa.BigInteger(), nullable=False),
    sa.Column('reserved_cents', sa.BigInteger(), nullable=False),
    sa.Column('disbursed_cents', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('envelopes_v1', schema=None) as batch_op:
        batch_op.create_index('ix_envelopes_v1_year', ['year', 'scope'], unique=False)

    op.create_table('projection_tracking',
    sa.Column('projection', sa.String(length=100), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('projection')
    )


def downgrade() -> None:
    op.drop_table('projection_tracking')
    op.drop_table('envelopes_v1')
    op.drop_table('decisions_v1')
