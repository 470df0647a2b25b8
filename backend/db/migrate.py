"""`alembic upgrade head`, programmatically: how `prunescape migrate`, `serve` and the tests
create the schema (never `Base.metadata.create_all`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from backend.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini")) if (REPO_ROOT / "alembic.ini").exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    settings = settings or get_settings()
    command.upgrade(alembic_config(str(settings.database_url)), revision)


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    settings = settings or get_settings()
    command.downgrade(alembic_config(str(settings.database_url)), revision)
