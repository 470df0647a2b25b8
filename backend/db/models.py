"""The schema as SQLAlchemy 2 typed ORM classes. Alembic (migrations/) creates it; never create_all.

State lives here, not in the broker. Run and study status words: `backend.run_states`.
Grid indices: grid_i is the learning-rate index, grid_j the weight-decay index (backend/spec.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


# Stable constraint names so Alembic batch operations work the same on SQLite and Postgres.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TS = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


# SQLite: ids are never reused (AUTOINCREMENT, migration 0003); Postgres sequences never reuse.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(16), default="native")
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending", index=True)
    created_by: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TS, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    # Every grid extension and auto-extension verdict, oldest first (backend/extension_records.py).
    extensions: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="Variant.id"
    )


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (sa.UniqueConstraint("study_id", "name", name="uq_variants_study_name"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    source_variant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("variants.id", ondelete="SET NULL"))
    flops_ratio_achieved: Mapped[float | None] = mapped_column(sa.Float)
    kept_fractions: Mapped[dict[str, float] | None] = mapped_column(sa.JSON)
    params: Mapped[int | None] = mapped_column(sa.BigInteger)
    params_nonzero: Mapped[int | None] = mapped_column(sa.BigInteger)
    flops: Mapped[int | None] = mapped_column(sa.BigInteger)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    size_sparse_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    latency: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    histograms: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    scan: Mapped[Any | None] = mapped_column(sa.JSON)
    measured: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # environment, misc figures
    model_path: Mapped[str | None] = mapped_column(sa.String(1024))  # relative to artifact_dir

    study: Mapped[Study] = relationship(back_populates="variants")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        sa.Index("ix_runs_study_status", "study_id", "status"),
        sa.Index("ix_runs_study_variant", "study_id", "variant_id"),
        sa.Index("ix_runs_depends_on", "depends_on_id"),
        sa.Index("ix_runs_study_finished", "study_id", "finished_at"),
        sa.Index("ix_runs_study_ids", "study_id", "id"),  # run pages by id, a study's last run id
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id", ondelete="CASCADE"))
    variant_id: Mapped[int] = mapped_column(sa.ForeignKey("variants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    lr: Mapped[float | None] = mapped_column(sa.Float)
    wd: Mapped[float | None] = mapped_column(sa.Float)
    grid_i: Mapped[int | None] = mapped_column(sa.Integer)
    grid_j: Mapped[int | None] = mapped_column(sa.Integer)
    seed: Mapped[int] = mapped_column(sa.Integer, default=0)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    depends_on_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    top1: Mapped[float | None] = mapped_column(sa.Float)
    top5: Mapped[float | None] = mapped_column(sa.Float)
    loss: Mapped[float | None] = mapped_column(sa.Float)
    epochs_done: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    checkpoint_path: Mapped[str | None] = mapped_column(sa.String(1024))
    model_path: Mapped[str | None] = mapped_column(sa.String(1024))
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(TS)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    heartbeat_at: Mapped[datetime | None] = mapped_column(TS)

    variant: Mapped[Variant] = relationship()
    epochs: Mapped[list[EpochMetric]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="EpochMetric.epoch"
    )


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "epoch", name="uq_epoch_metrics_run_epoch"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(sa.Integer)  # 1-based
    train_loss: Mapped[float | None] = mapped_column(sa.Float)
    train_top1: Mapped[float | None] = mapped_column(sa.Float)
    val_loss: Mapped[float | None] = mapped_column(sa.Float)
    top1: Mapped[float | None] = mapped_column(sa.Float)
    top5: Mapped[float | None] = mapped_column(sa.Float)
    lr: Mapped[float | None] = mapped_column(sa.Float)
    seconds: Mapped[float | None] = mapped_column(sa.Float)


class Artefact(Base):
    __tablename__ = "artefacts"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("variants.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(32))  # model | checkpoint | onnx | log | ...
    path: Mapped[str] = mapped_column(sa.String(1024))  # relative to settings.artifact_dir
    bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # sha256 hex
    # An admin token may cancel, extend or delete any study (others: only their own).
    is_admin: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
