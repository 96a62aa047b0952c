"""The migrations: they build exactly the schema of the models, and each step up and down keeps
what is stored, on SQLite and PostgreSQL.

On SQLite a migration that rebuilds a table (Alembic's batch mode: copy, DROP, rename) with its
foreign keys on cascade-deletes every row that refers to it — a run's points, an experiment's
runs — so every step is run here on a database holding an experiment, a run and its points.
"""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from backend.domain import migrate
from backend.domain.db import make_engine
from backend.domain.models import Base, Experiment, ExperimentTag, IdempotencyKey, MetricPoint, Run, RunTag
from tests.lab.conftest import POSTGRES_SERVER

#: The revisions whose downgrade runs here (before them, migrations are the initial schema).
STEPS_DOWN = ("0005", "0004", "0003")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path) -> str:
    """An empty database of its own (the migration is run step by step on it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"idlab_test_migration_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def store_an_experiment_with_a_run_and_points(engine, points=(("train_loss", 0, 0, 1.5),)) -> None:
    """Rows in the three tables a table rebuild could cascade through, in SQL any revision accepts: an
    experiment, its run, and the run's `points` (key, step, epoch, value)."""
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO experiments (name, kind, base_config, grid, seeds, baseline, "
                                "created_at) VALUES ('old', 'grid', '{}', '{}', '[]', '{}', CURRENT_TIMESTAMP)"))
        connection.execute(text(
            "INSERT INTO runs (experiment_id, role, config, status, attempt, cancel_requested, created_at, "
            "progress, final_metrics, updated_at) VALUES (1, 'member', '{}', 'succeeded', 1, false, "
            "CURRENT_TIMESTAMP, '{}', '{}', CURRENT_TIMESTAMP)"))
        connection.execute(text("INSERT INTO metric_points (run_id, key, step, epoch, value) "
                                "VALUES (1, :key, :step, :epoch, :value)"),
                           [dict(key=k, step=s, epoch=e, value=v) for k, s, e, v in points])


def test_the_migration_keeps_what_is_stored_and_nothing_is_archived(fresh_url):
    """0004 → 0005 on a database holding an experiment, a run and its points: nothing is lost (on SQLite
    a table rebuilt with its foreign keys on would cascade-delete the points), and nothing reads archived."""
    migrate.upgrade(fresh_url, "0004")
    engine = make_engine(fresh_url, pooled=False)
    try:
        store_an_experiment_with_a_run_and_points(engine)
        migrate.upgrade(fresh_url)
        with Session(engine) as session:
            run = session.get(Run, 1)
            assert run.archived is False and run.experiment.archived is False
            assert session.scalar(select(func.count()).select_from(MetricPoint)) == 1
            assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0
        command.downgrade(migrate.alembic_config(fresh_url), "0004")       # and back, losing nothing either
        migrate.upgrade(fresh_url)
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(MetricPoint)) == 1
            assert session.get(Run, 1).archived is False
    finally:
        engine.dispose()


def test_the_tags_migration_keeps_what_is_stored_and_gives_nothing_tags_or_notes(fresh_url):
    """0005 → 0006 → 0005 → 0006 on a database holding an experiment, a run and its points: nothing is lost
    either way (on SQLite a rebuilt runs table would cascade-delete the points), the rows read no tags and
    empty notes, and tags given after the upgrade go with the downgrade, the runs staying."""
    migrate.upgrade(fresh_url, "0005")
    engine = make_engine(fresh_url, pooled=False)
    try:
        store_an_experiment_with_a_run_and_points(engine)
        migrate.upgrade(fresh_url, "0006")
        with Session(engine) as session:
            run = session.get(Run, 1)
            assert (run.notes, run.tag_rows, run.experiment.notes, run.experiment.tag_rows) == ("", [], "", [])
            assert session.scalar(select(func.count()).select_from(MetricPoint)) == 1
            run.tag_rows.append(RunTag(tag="Kept", tag_key="kept"))
            run.experiment.tag_rows.append(ExperimentTag(tag="sweep", tag_key="sweep"))
            run.notes = "notes"
            session.commit()
        command.downgrade(migrate.alembic_config(fresh_url), "0005")
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM metric_points")) == 1
            assert connection.scalar(text("SELECT count(*) FROM runs")) == 1
            assert connection.scalar(text("SELECT count(*) FROM experiments")) == 1
        migrate.upgrade(fresh_url, "0006")
        with Session(engine) as session:
            assert session.get(Run, 1).tag_rows == [] and session.get(Experiment, 1).notes == ""
            assert session.scalar(select(func.count()).select_from(MetricPoint)) == 1
    finally:
        engine.dispose()


def test_the_migrations_build_the_schema_of_the_models(fresh_url):
    migrate.upgrade(fresh_url)
    engine = create_engine(fresh_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], "the models and the migrations differ: add a migration"


def test_every_downgrade_keeps_the_runs_and_their_points(fresh_url):
    migrate.upgrade(fresh_url, "0003")
    engine = make_engine(fresh_url, pooled=False)
    try:
        store_an_experiment_with_a_run_and_points(engine)
        migrate.upgrade(fresh_url)
        for revision in STEPS_DOWN:
            command.downgrade(migrate.alembic_config(fresh_url), revision)
            with engine.connect() as connection:
                assert connection.scalar(text("SELECT count(*) FROM metric_points")) == 1, revision
                assert connection.scalar(text("SELECT count(*) FROM runs")) == 1, revision
        migrate.upgrade(fresh_url)
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(MetricPoint)) == 1
            assert session.get(Run, 1).batch_id is None
    finally:
        engine.dispose()


def test_no_migration_imports_the_labs_code():
    """A migration is history: it runs the code it holds, so a later change to the lab cannot change it."""
    import ast
    from pathlib import Path

    versions = Path(migrate.__file__).parent / "migrations" / "versions"
    for path in sorted(versions.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            lab = [name for name in names if name.split(".")[0] in ("backend", "worker", "idlab")]
            assert not lab, f"{path.name} imports {lab}: copy what it needs into the migration"


def test_the_envelopes_migration_computes_what_the_lab_computes_today(fresh_url):
    from backend.domain import points

    migrate.upgrade(fresh_url, "0001")
    engine = make_engine(fresh_url, pooled=False)
    # Several buckets, out-of-order steps, ties and a spike: every corner of an envelope is exercised.
    stored = [("train_loss", step, step // 50, 1.0 + ((step * 37) % 11) / 10 + (9.0 if step == 130 else 0.0))
              for step in (*range(0, 300, 3), 1, 64, 65, 127, 128)]
    try:
        store_an_experiment_with_a_run_and_points(engine, stored)
        migrate.upgrade(fresh_url, "0002")
        with engine.connect() as connection:
            migrated = connection.execute(text(
                f"SELECT {', '.join(points.ENVELOPE_COLUMNS)} FROM metric_envelopes ORDER BY key, bucket")).all()
        in_order = sorted((1, key, step, epoch, value) for key, step, epoch, value in stored)
        in_order.sort(key=lambda row: row[2])
        expected = sorted(points.envelopes(1, in_order), key=lambda row: (row[1], row[2]))
        assert [tuple(row) for row in migrated] == expected
    finally:
        engine.dispose()
