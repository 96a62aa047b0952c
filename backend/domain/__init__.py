"""The domain: database models, sessions, settings, migrations, the run lifecycle, metric
points, experiments (grid and search), analysis (d_int90) and the queue producer.

Shared by the HTTP API (`backend.api`) and the worker (`worker`); it imports neither
(no HTTP, no torch), only the contracts (`idlab.config`, `idlab.metrics`, …).
"""
