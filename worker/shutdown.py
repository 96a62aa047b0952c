"""How a pool process ends a run when its worker shuts down: it gives the run back, it does not die with it.

Celery's main process receives SIGTERM (docker stop, `idlab serve` stopping, Ctrl-C
→ warm shutdown) and forwards it to the pool process executing a run
(`worker.signals`). There, while a run executes, SIGTERM only raises a flag: the
run's callback sees it within one logging interval, the run goes back to the queue
(`lifecycle.release`), and the process exits. Its message is sent again by the main
process once the worker has stopped consuming (else the closing worker could take
it straight back), or, if the main process is gone, by the reaper. Outside a run,
SIGTERM does what Celery's pool set it to do (exit). A second SIGTERM, or SIGKILL,
ends the process at once: the reaper then requeues the run after `stale_after_seconds`.

The handler is installed when the run starts, not when the pool process starts:
billiard replaces SIGTERM's handler after Celery's process-start hooks have run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

#: Set when this process was asked to stop; the run's callback then stops training.
requested = threading.Event()
#: Set in the worker's main process when it begins to shut down; pool processes forked after
#: that inherit it set, and start no run (the consumer may hand them one before it closes).
worker_stopping = threading.Event()
_previous: list = [signal.SIG_DFL]


@contextlib.contextmanager
def executing() -> Iterator[threading.Event]:
    """While a run executes, SIGTERM asks it to stop instead of ending the process; yields the flag."""
    _previous[0] = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, _previous[0])


def _on_sigterm(signum, frame) -> None:
    if not requested.is_set():
        requested.set()
        return
    previous = _previous[0]  # asked twice: stop now, as the process would have without us
    signal.signal(signum, previous)
    if callable(previous):
        previous(signum, frame)
    else:
        os.kill(os.getpid(), signum)
