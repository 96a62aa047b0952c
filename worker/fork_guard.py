"""No fork while another thread of this process is inside the database driver or the broker client.

The worker's main process forks a pool process for every run, while its maintenance
thread talks to the database. A fork copies only the forking thread: a lock that the
maintenance thread held at that instant (SQLite's global mutex, a driver's or a
connection pool's) stays locked forever in the child, whose first connect then hangs.
So database and broker work in the main process runs inside `guarded()`, and a fork
waits for it to end (`os.register_at_fork`). A pass takes milliseconds; a fork waits
at most that long.

The hook is registered when this module is imported, after `logging`'s, so it runs
before it (fork hooks run in reverse order): the forking thread does not yet hold
logging's lock while it waits, and the guarded thread may log.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_lock = threading.Lock()


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Hold off forks of this process while the block runs."""
    with _lock:
        yield


def _release() -> None:
    _lock.release()


os.register_at_fork(before=_lock.acquire, after_in_parent=_release, after_in_child=_release)
