"""Celery's prefork pool, with a finished pool process replaced within a fraction of a second.

Every run executes in a fresh process (worker_max_tasks_per_child = 1), so a pool
process exits after each run and the next run waits for its replacement. With an
asynchronous broker (Redis) Celery's pool replaces exited processes when it notices
the exit, but the exit event can fire before the process can be reaped, and the
replacement then waits for the pool's 5-second maintenance timer: up to 5 s of idle
GPU between runs. Here the timer ticks every MAINTAIN_SECONDS (a cheap check of the
pool processes' exit codes). With the filesystem broker the blocking pool is used,
whose supervisor thread already checks often.

Selected by `worker_pool` in `backend.domain.queue`; `--pool prefork` resolves to it.
"""

from __future__ import annotations

from celery.concurrency import asynpool, prefork

MAINTAIN_SECONDS = 0.2


class RecyclingAsynPool(asynpool.AsynPool):
    @property
    def timers(self):
        return {self.maintain_pool: MAINTAIN_SECONDS}


class TaskPool(prefork.TaskPool):
    Pool = RecyclingAsynPool
