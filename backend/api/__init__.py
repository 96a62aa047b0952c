"""The HTTP API (FastAPI): the app (`backend.api.app:create_app`), routes, request and
response schemas, auth, limits, events (SSE), the dashboard's static files.

Built on the domain (`backend.domain`) and the contracts; it never imports the worker or torch.
"""
