"""funding's outcomes on the dossiers: feasibility grant, amount financed

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dossiers_v1', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feasibility_grant', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('financed_amount_cents', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dossiers_v1', schema=None) as batch_op:
        batch_op.drop_column('financed_amount_cents')
        batch_op.drop_column('feasibility_grant')
