"""Routers of /api/v1: thin; the logic lives in backend.services."""
