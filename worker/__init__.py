"""The worker: Celery tasks that execute runs (`tasks`, `execution`, `batching`, `recorder`),
heartbeats and the reaper, on the domain (`backend.domain`) and the engine (`worker.subspace`).
A worker process never imports the HTTP API."""
