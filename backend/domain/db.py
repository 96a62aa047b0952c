"""The database engine and sessions; SQLite and Postgres from the same code."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, pooled: bool = True) -> Engine:
    """An engine for `url`; SQLite gets WAL (readers never block the writer) and a busy timeout.

    `pooled=False` opens a connection per use and keeps none open in between: for a
    process that forks (the Celery worker's main process), so no child inherits a
    live connection.
    """
    pool = {} if pooled else {"poolclass": NullPool}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if not pooled:
        return create_engine(url, **pool)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)



# The API's per-request session is backend.api.deps.get_session (the serving app's database);
# the worker makes its own engine from its settings.
