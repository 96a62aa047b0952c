"""batches: the batch a run trained in, and the batch a worker executes

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_batch_id'), ['batch_id'], unique=False)
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current_batch', sa.JSON(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), not batch mode: its table rebuild (copy, DROP,
    # rename) would, with foreign keys on, cascade-delete every run's points.
    op.drop_column('workers', 'current_batch')
    op.drop_index(op.f('ix_runs_batch_id'), table_name='runs')
    op.drop_column('runs', 'batch_id')
