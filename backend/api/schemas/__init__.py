"""Request and response models of the HTTP API (apart from the ORM models in backend.domain.models)."""
