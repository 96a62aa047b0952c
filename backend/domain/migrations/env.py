"""Alembic environment: migrations run online against the URL `backend.domain.migrate` sets."""

from alembic import context
from backend.domain.db import make_engine
from backend.domain.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several processes may start at once: one migrates, the others wait for it.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7744019)")
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()  # the advisory lock's transaction, begun outside Alembic's
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run them against the database")
run_migrations_online()
