"""archive and idempotency: runs.archived and experiments.archived, and the answers to POSTs sent
with an Idempotency-Key

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # The runs and experiments already stored are not archived. The default is the literal '0' (false on
    # SQLite and Postgres alike), not sa.false(): for an expression default, batch mode rebuilds a SQLite
    # table (copy, DROP, rename), and with foreign keys on, dropping experiments or runs cascades to
    # every run and point stored. A literal default is a plain ALTER TABLE ADD COLUMN.
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived', sa.Boolean(), server_default='0', nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived', sa.Boolean(), server_default='0', nullable=False))
    op.create_table('idempotency_keys',
                    sa.Column('id', BIG_ID, nullable=False),
                    sa.Column('key', sa.String(length=200), nullable=False),
                    sa.Column('endpoint', sa.String(length=100), nullable=False),
                    sa.Column('request_hash', sa.String(length=64), nullable=False),
                    sa.Column('status_code', sa.Integer(), nullable=False),
                    sa.Column('response', sa.JSON(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('key', 'endpoint', name='uq_idempotency_keys_key_endpoint'))
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_created_at'))
    op.drop_table('idempotency_keys')
    # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), not batch mode: its table rebuild would cascade-delete
    # the runs and points (see upgrade).
    op.drop_column('runs', 'archived')
    op.drop_column('experiments', 'archived')
