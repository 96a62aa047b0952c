"""One router per resource, all mounted under /api by backend.api.app."""
