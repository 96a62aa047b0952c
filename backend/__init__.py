"""The server side: `backend.domain` (what the API and the worker share: the database, the run
lifecycle, experiments, analysis, the queue producer) and `backend.api` (the HTTP API on it)."""
