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
    for (run_id,) in connection.execute(sa.text('SELECT DISTINCT run_id FROM metric_points')).all():
        _rebuild_envelopes(connection, run_id)


# What this revision computes, copied here from backend.domain.points as it stood: a later change
# to the lab's envelopes must not change what this migration did.
ENVELOPE_STEPS = 64
CORNERS = ('first', 'last', 'min', 'max')
ENVELOPE_COLUMNS = ('run_id', 'key', 'bucket', 'n',
                    *(f'{corner}_{part}' for corner in CORNERS for part in ('step', 'value', 'epoch')))
POINTS = sa.table('metric_points', *(sa.column(name) for name in ('run_id', 'key', 'step', 'epoch', 'value')))
ENVELOPES = sa.table('metric_envelopes', *(sa.column(name) for name in ENVELOPE_COLUMNS))


def _rebuild_envelopes(connection, run_id: int) -> None:
    """A run's envelopes recomputed from its stored points."""
    connection.execute(sa.delete(ENVELOPES).where(ENVELOPES.c.run_id == run_id))
    # In step order, as the points were written: where values tie for a bucket's extreme, the rebuilt
    # envelope keeps the earliest step, as the incremental merge did (an unordered scan would not).
    rows = connection.execute(sa.select(POINTS.c.run_id, POINTS.c.key, POINTS.c.step, POINTS.c.epoch, POINTS.c.value)
                              .where(POINTS.c.run_id == run_id).order_by(POINTS.c.step)).all()
    if rows:
        connection.execute(sa.insert(ENVELOPES), [dict(zip(ENVELOPE_COLUMNS, row, strict=True))
                                                  for row in _envelopes(run_id, rows)])


def _envelopes(run_id: int, rows) -> list[tuple]:
    """The envelope of each (key, bucket) of these (run_id, key, step, epoch, value) rows, as
    tuples in ENVELOPE_COLUMNS order."""
    found: dict[tuple[str, int], list] = {}
    for _, key, step, epoch, value in rows:
        bucket = step // ENVELOPE_STEPS
        e = found.get((key, bucket))
        if e is None:
            found[(key, bucket)] = [run_id, key, bucket, 1, *((step, value, epoch) * len(CORNERS))]
            continue
        e[3] += 1
        if step < e[4]:
            e[4:7] = step, value, epoch
        if step > e[7]:
            e[7:10] = step, value, epoch
        if value < e[11]:
            e[10:13] = step, value, epoch
        if value > e[14]:
            e[13:16] = step, value, epoch
    return [tuple(e) for e in found.values()]


def downgrade() -> None:
    op.drop_table('metric_envelopes')
