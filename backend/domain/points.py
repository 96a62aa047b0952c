"""Metric points: the bulk upsert workers write with, and the reads the API serves.

A point is keyed by (run, key, step), so a retried or restarted run overwrites
its earlier points instead of duplicating them. A point whose value changes is
given a fresh id: ids only grow, and an event stream that resumes "after id N"
(Server-Sent Events, Last-Event-ID) also receives the overwritten values.

Beside the points, every write keeps the series' envelopes up to date: for each
bucket of ENVELOPE_STEPS steps its first, lowest, highest and last point. A long
curve is then drawn from ~4·steps/ENVELOPE_STEPS candidate points instead of every
point, and a spike of any height survives. An overwritten point whose new value is
less extreme leaves the old extreme in its bucket until the envelopes are rebuilt
(`rebuild_envelopes`, run when a re-executed run finishes).
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from backend.domain.models import MetricEnvelope, MetricPoint

POINTS = MetricPoint.__table__
ENVELOPES = MetricEnvelope.__table__
ENVELOPE_STEPS = 64
CORNERS = ("first", "last", "min", "max")
#: (key, step, epoch, value), as the training loop reports them.
Point = tuple[str, int, int | None, float]


def write_points(session: Session, run_id: int, points: Iterable[Point]) -> None:
    """Insert or overwrite the points of run `run_id` (one bulk statement); the caller commits.

    Non-finite values (NaN, ±inf: a diverging loss) are skipped: SQLite cannot store
    NaN, JSON cannot carry it, and the run's status already says it diverged. When a
    batch holds one (key, step) twice, the last value wins.
    """
    latest: dict[tuple[str, int], tuple] = {}
    for key, step, epoch, value in points:
        value = float(value)
        if math.isfinite(value):
            latest[(key, int(step))] = (run_id, key, int(step), int(epoch or 0), value)
    if not latest:
        return
    rows = list(latest.values())
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        _write_postgres(session, rows)
    elif dialect == "sqlite":
        session.execute(_SQLITE_UPSERT, [dict(zip(COLUMNS, row, strict=True)) for row in rows])
    else:
        raise NotImplementedError(f"metric points need SQLite or PostgreSQL, not {dialect}")
    _write_envelopes(session, dialect, envelopes(run_id, rows))


ENVELOPE_COLUMNS = ("run_id", "key", "bucket", "n",
                    *(f"{corner}_{part}" for corner in CORNERS for part in ("step", "value", "epoch")))
#: How a stored envelope and a new one merge: the corner whose test holds is the new one's.
_NEW_CORNER_WINS = {"first": "EXCLUDED.first_step <= {t}.first_step", "last": "EXCLUDED.last_step >= {t}.last_step",
                    "min": "EXCLUDED.min_value < {t}.min_value", "max": "EXCLUDED.max_value > {t}.max_value"}
_ENVELOPE_MERGE = ", ".join(
    [f"n = {ENVELOPES.name}.n + EXCLUDED.n"]
    + [f"{corner}_{part} = CASE WHEN {test.format(t=ENVELOPES.name)} THEN EXCLUDED.{corner}_{part} "
       f"ELSE {ENVELOPES.name}.{corner}_{part} END" for corner, test in _NEW_CORNER_WINS.items()
       for part in ("step", "value", "epoch")])
_ENVELOPE_UPSERT = (f"INSERT INTO {ENVELOPES.name} ({', '.join(ENVELOPE_COLUMNS)}) VALUES {{values}} "
                    f"ON CONFLICT (run_id, key, bucket) DO UPDATE SET {_ENVELOPE_MERGE}")


def envelopes(run_id: int, rows: Iterable[tuple]) -> list[tuple]:
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


def _write_envelopes(session: Session, dialect: str, rows: list[tuple]) -> None:
    """Upsert the batch's envelopes, merging each with its bucket's stored one, in one round trip."""
    cursor = session.connection().connection.cursor()
    try:
        if dialect == "postgresql":
            from psycopg2.extras import execute_values
            execute_values(cursor, _ENVELOPE_UPSERT.format(values="%s"), rows, page_size=len(rows))
        else:
            marks = ", ".join("?" * len(ENVELOPE_COLUMNS))
            cursor.executemany(_ENVELOPE_UPSERT.format(values=f"({marks})"), rows)
    finally:
        cursor.close()


def rebuild_envelopes(connection, run_id: int) -> None:
    """Recompute a run's envelopes from its stored points (after overwrites, or for old data)."""
    connection.execute(delete(ENVELOPES).where(ENVELOPES.c.run_id == run_id))
    # In step order, as the points were written: where values tie for a bucket's extreme, the rebuilt
    # envelope keeps the earliest step, as the incremental merge did (an unordered scan would not).
    rows = connection.execute(select(POINTS.c.run_id, POINTS.c.key, POINTS.c.step, POINTS.c.epoch, POINTS.c.value)
                              .where(POINTS.c.run_id == run_id).order_by(POINTS.c.step)).all()
    if rows:
        connection.execute(insert(ENVELOPES), [dict(zip(ENVELOPE_COLUMNS, row, strict=True))
                                               for row in envelopes(run_id, rows)])


COLUMNS = ("run_id", "key", "step", "epoch", "value")
_INSERT = f"INSERT INTO {POINTS.name} ({', '.join(COLUMNS)}) VALUES %s"
# A changed point gets a fresh id (see the module's docstring); an identical one is left alone.
_POSTGRES_UPSERT = (f"{_INSERT} ON CONFLICT (run_id, key, step) DO UPDATE SET value = EXCLUDED.value, "
                    f"epoch = EXCLUDED.epoch, id = nextval(pg_get_serial_sequence('{POINTS.name}', 'id')) "
                    f"WHERE {POINTS.name}.value <> EXCLUDED.value OR {POINTS.name}.epoch <> EXCLUDED.epoch")


_COPY = f"COPY {POINTS.name} ({', '.join(COLUMNS)}) FROM STDIN"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: list[tuple]) -> io.StringIO:
    """The rows in COPY's text format: tab-separated, one per line, the key escaped."""
    return io.StringIO("".join(f"{run_id}\t{key.translate(_COPY_ESCAPES)}\t{step}\t{epoch}\t{value!r}\n"
                               for run_id, key, step, epoch, value in rows))


def _write_postgres(session: Session, rows: list[tuple]) -> None:
    """COPY, or psycopg2's execute_values of the upsert, in the session's transaction.

    Measured on the development machine, in batches of 500: execute_values of the upsert
    ~14,000 rows/s; of a plain INSERT ~20,000–27,000 (Postgres' speculative insertion makes
    ON CONFLICT costly); COPY ~36,000. Nearly every batch is new points, so COPY is tried
    first, in a savepoint, and the upsert follows only when some already exist (a retried
    or restarted run).
    """
    from psycopg2 import errors
    from psycopg2.extras import execute_values

    cursor = session.connection().connection.cursor()
    try:
        cursor.execute("SAVEPOINT idlab_points")
        try:
            cursor.copy_expert(_COPY, _copy_text(rows))
        except errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT idlab_points")
            execute_values(cursor, _POSTGRES_UPSERT, rows, page_size=len(rows))
        cursor.execute("RELEASE SAVEPOINT idlab_points")
    finally:
        cursor.close()


def _sqlite_upsert():
    statement = sqlite.insert(POINTS)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[POINTS.c.run_id, POINTS.c.key, POINTS.c.step],
        # A rowid alias: the next id SQLite itself would assign.
        set_={"value": new.value, "epoch": new.epoch,
              "id": select(func.coalesce(func.max(POINTS.c.id), 0) + 1).scalar_subquery()},
        where=or_(POINTS.c.value != new.value, POINTS.c.epoch != new.epoch),
    )


_SQLITE_UPSERT = _sqlite_upsert()


# ---- reads ------------------------------------------------------------------------------


def series_keys(session: Session, run_id: int) -> list[str]:
    """The keys the run has points for, sorted."""
    return list(session.scalars(
        select(POINTS.c.key).where(POINTS.c.run_id == run_id).distinct().order_by(POINTS.c.key)))


def last_point_id(session: Session, run_id: int) -> int:
    """The largest point id of the run (0 when it has none): where an event stream resumes."""
    return session.scalar(select(func.coalesce(func.max(POINTS.c.id), 0)).where(POINTS.c.run_id == run_id))


#: A range with at most this many points is drawn from the points themselves, a longer one
#: from its envelopes: either way the response is downsampled to the caller's max_points.
RAW_LIMIT = 20_000

Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # steps, values, epochs


def _in_range(column, x_min: float | None, x_max: float | None) -> list:
    return ([column >= x_min] if x_min is not None else []) + ([column <= x_max] if x_max is not None else [])


def count_points(session: Session, run_id: int, key: str, x_min: float | None = None,
                 x_max: float | None = None) -> int:
    return session.scalar(select(func.count()).select_from(POINTS).where(
        POINTS.c.run_id == run_id, POINTS.c.key == key, *_in_range(POINTS.c.step, x_min, x_max)))


def read_series(session: Session, run_id: int, key: str, x_min: float | None = None,
                x_max: float | None = None) -> Series:
    """(steps, values, epochs) of one series within [x_min, x_max], in step order.

    Served by the unique index (run_id, key, step). Rows are fetched with the driver's
    own cursor straight into numpy: going through SQLAlchemy's Row objects costs
    several times more for 10⁵ points.
    """
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    bounds = [(f" AND step >= {mark}", x_min), (f" AND step <= {mark}", x_max)]
    sql = f"SELECT step, value, epoch FROM {POINTS.name} WHERE run_id = {mark} AND key = {mark}"
    sql += "".join(clause for clause, bound in bounds if bound is not None) + " ORDER BY step"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, (run_id, key, *(bound for _, bound in bounds if bound is not None)))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    table = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=3 * len(rows)).reshape(-1, 3)
    table = table[np.isfinite(table[:, 1])]
    return table[:, 0].astype(np.int64), table[:, 1].copy(), table[:, 2].astype(np.int64)


def read_envelope_points(session: Session, run_id: int, key: str, x_min: float | None = None,
                         x_max: float | None = None) -> Series:
    """The first, lowest, highest and last point of every bucket within [x_min, x_max], in step order:
    a subset of the series that holds each bucket's extremes."""
    columns = [getattr(ENVELOPES.c, f"{corner}_{part}") for corner in CORNERS for part in ("step", "value", "epoch")]
    low = None if x_min is None else int(x_min) // ENVELOPE_STEPS
    high = None if x_max is None else int(x_max) // ENVELOPE_STEPS
    rows = session.execute(select(*columns).where(
        ENVELOPES.c.run_id == run_id, ENVELOPES.c.key == key, *_in_range(ENVELOPES.c.bucket, low, high))).all()
    corners = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64,
                          count=12 * len(rows)).reshape(-1, 3)       # one (step, value, epoch) per corner
    steps, first = np.unique(corners[:, 0], return_index=True)       # sorted; a step once
    keep = np.ones(len(steps), dtype=bool)
    if x_min is not None:
        keep &= steps >= x_min
    if x_max is not None:
        keep &= steps <= x_max
    chosen = corners[first[keep]]
    return chosen[:, 0].astype(np.int64), chosen[:, 1].copy(), chosen[:, 2].astype(np.int64)


def points_after(session: Session, run_id: int, after_id: int, limit: int) -> Sequence:
    """Up to `limit` points of the run with id > after_id, by id (the index (run_id, id))."""
    return session.execute(
        select(POINTS.c.id, POINTS.c.key, POINTS.c.step, POINTS.c.epoch, POINTS.c.value)
        .where(POINTS.c.run_id == run_id, POINTS.c.id > after_id).order_by(POINTS.c.id).limit(limit)
    ).all()
