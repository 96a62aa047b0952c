"""model evaluations: model files sent to POST /api/models/evaluate, and what a worker measured

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('model_evaluations',
                    sa.Column('id', BIG_ID, nullable=False),
                    sa.Column('status', sa.String(length=20), nullable=False),
                    sa.Column('device', sa.String(length=20), nullable=False),
                    sa.Column('file', sa.LargeBinary(), nullable=False),
                    sa.Column('sha256', sa.String(length=64), nullable=False),
                    sa.Column('config', sa.JSON(), nullable=False),
                    sa.Column('recorded_test_acc', sa.Float(), nullable=True),
                    sa.Column('result', sa.JSON(), nullable=True),
                    sa.Column('error', sa.Text(), nullable=True),
                    sa.Column('worker', sa.String(length=200), nullable=True),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True),
                    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
                    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('model_evaluations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_evaluations_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('model_evaluations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_evaluations_status'))
    op.drop_table('model_evaluations')
