"""tags and notes: run_tags and experiment_tags, runs.notes and experiments.notes

Revision ID: 0006
Revises: 0005

Tags are rows of their own, one table per kind of owner, rather than a JSON list on the owner:
- `?tag=a&tag=b` is an EXISTS per tag on an indexed (tag_key, owner) pair, the same plain SQL on
  SQLite and Postgres (a JSON list would need json_each on one and a GIN index on the other);
- a real foreign key with ON DELETE CASCADE removes a run's tags with the run, and an experiment's
  with the experiment (a polymorphic (kind, id) table could not have one);
- the unique (owner, tag_key) keeps a tag once per object, even when two clients add it at once;
- `GET /api/tags` (the tags in use, with counts) is a GROUP BY on the index.
`tag` keeps the spelling given; `tag_key` is its lower case, what filters and uniqueness compare.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TAG_LENGTH = 40


def create_tags_table(table: str, owner_column: str, owners: str) -> None:
    op.create_table(table,
                    sa.Column('id', BIG_ID, nullable=False),
                    sa.Column(owner_column, BIG_ID, nullable=False),
                    sa.Column('tag', sa.String(length=TAG_LENGTH), nullable=False),
                    sa.Column('tag_key', sa.String(length=TAG_LENGTH), nullable=False),
                    sa.ForeignKeyConstraint([owner_column], [f'{owners}.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint(owner_column, 'tag_key', name=f'uq_{table}_{owner_column}_tag_key'))
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(f'ix_{table}_tag_key_{owner_column}', ['tag_key', owner_column], unique=False)


def upgrade() -> None:
    # Literal defaults, added with a plain ALTER TABLE ADD COLUMN: batch mode with an expression default
    # would rebuild a SQLite table, and dropping runs or experiments with foreign keys on cascades to
    # every run and point stored (see 0005).
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.Text(), server_default='', nullable=False))
    create_tags_table('run_tags', 'run_id', 'runs')
    create_tags_table('experiment_tags', 'experiment_id', 'experiments')


def downgrade() -> None:
    for table, owner_column in (('experiment_tags', 'experiment_id'), ('run_tags', 'run_id')):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_tag_key_{owner_column}')
        op.drop_table(table)
    # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), not batch mode: its table rebuild would cascade-delete
    # the runs and points (see upgrade).
    op.drop_column('runs', 'notes')
    op.drop_column('experiments', 'notes')
