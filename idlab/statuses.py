"""A run's statuses: queued → running → succeeded | failed | cancelled | diverged.

A contract shared by the database models (`backend.domain.models`), the API's schemas,
the worker and the notebook client; pure, importing nothing.
"""

QUEUED, RUNNING, SUCCEEDED = "queued", "running", "succeeded"
FAILED, CANCELLED, DIVERGED = "failed", "cancelled", "diverged"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, DIVERGED)
#: A run in one of these states changes no more.
FINISHED = (SUCCEEDED, FAILED, CANCELLED, DIVERGED)
