"""Alembic migrations: the only way prunescape's schema is created or changed."""
