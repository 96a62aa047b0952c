"""search experiments: the search parameters of an experiment, and the state of each group's search

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search', sa.JSON(), nullable=True))
    op.create_table('search_groups',
                    sa.Column('id', BIG_ID, nullable=False),
                    sa.Column('experiment_id', BIG_ID, nullable=False),
                    sa.Column('position', sa.Integer(), nullable=False),
                    sa.Column('grid_values', sa.JSON(), nullable=False),
                    sa.Column('status', sa.String(length=20), nullable=False),
                    sa.Column('reason', sa.Text(), nullable=True),
                    sa.Column('threshold', sa.Float(), nullable=True),
                    sa.Column('bracket_lo', sa.Integer(), nullable=True),
                    sa.Column('bracket_hi', sa.Integer(), nullable=True),
                    sa.Column('rounds', sa.JSON(), nullable=False),
                    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('experiment_id', 'position', name='uq_search_groups_experiment_position'))
    with op.batch_alter_table('search_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_search_groups_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_search_groups_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('search_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_search_groups_status'))
        batch_op.drop_index(batch_op.f('ix_search_groups_experiment_id'))
    op.drop_table('search_groups')
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_column('search')
