"""metric envelopes: per-bucket first/min/max/last of every series

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    corners = [sa.Column(f'{corner}_{part}', sa.Float() if part == 'value' else sa.Integer(), nullable=False)
               for corner in ('first', 'last', 'min', 'max') for part in ('step', 'value', 'epoch')]
    op.create_table('metric_envelopes',
                    sa.Column('id', BIG_ID, nullable=False),
                    sa.Column('run_id', BIG_ID, nullable=False),
                    sa.Column('key', sa.String(length=40), nullable=False),
                    sa.Column('bucket', sa.Integer(), nullable=False),
                    sa.Column('n', sa.Integer(), nullable=False),
                    *corners,
                    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('run_id', 'key', 'bucket', name='uq_metric_envelopes_run_key_bucket'))
    # Envelopes of the points already stored, so existing long curves draw fast too.
    connection = op.get_bind()
    from backend.domain.points import rebuild_envelopes
    for (run_id,) in connection.execute(sa.text('SELECT DISTINCT run_id FROM metric_points')).all():
        rebuild_envelopes(connection, run_id)


def downgrade() -> None:
    op.drop_table('metric_envelopes')
