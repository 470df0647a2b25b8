"""Files prunescape writes hold trained models, a database of everyone's studies and API token
hashes: they are created readable by their user only, whatever the umask (0600 files, 0700 for a
directory made for them). `prunescape serve` also runs under umask 077 (tests/test_serve_e2e.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import sqlalchemy as sa

from backend.db.migrate import upgrade
from backend.db.session import dispose_engines, make_engine
from backend.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _with_umask(mask: int):
    class _Umask:
        def __enter__(self):
            self.old = os.umask(mask)

        def __exit__(self, *_exc):
            os.umask(self.old)

    return _Umask()


def test_the_sqlite_database_and_its_wal_are_0600_in_a_0700_directory(tmp_path):
    db = tmp_path / "new-dir" / "prunescape.db"
    with _with_umask(0o022):
        upgrade(Settings(data_dir=db.parent, database_url=f"sqlite:///{db}"))
        engine = make_engine(f"sqlite:///{db}")
        with engine.begin() as conn:  # a write: SQLite makes its -wal and -shm files
            conn.execute(sa.text("insert into api_tokens (name, token_hash, is_admin, created_at) "
                                 "values ('x', 'h', 0, '2026-01-01')"))  # fmt: skip
            assert _mode(db.with_name("prunescape.db-wal")) == 0o600
            assert _mode(db.with_name("prunescape.db-shm")) == 0o600
        engine.dispose()
    dispose_engines()
    assert _mode(db) == 0o600
    assert _mode(db.parent) == 0o700


def test_an_existing_database_keeps_its_mode(tmp_path):
    db = tmp_path / "prunescape.db"
    db.touch(mode=0o640)
    db.chmod(0o640)
    make_engine(f"sqlite:///{db}").dispose()
    assert _mode(db) == 0o640


def test_checkpoints_and_model_files_are_0600(tmp_path):
    import torch

    from workers.engine.artifacts import save_model
    from workers.engine.checkpoint import save_atomic

    with _with_umask(0o022):
        save_atomic({"epoch": 1}, tmp_path / "run_1" / "checkpoint.pt")
        save_model(
            torch.nn.Linear(2, 2), tmp_path / "model.pt", model_name="x", num_classes=2, input_shape=(2,)
        )
    assert _mode(tmp_path / "run_1" / "checkpoint.pt") == 0o600
    assert _mode(tmp_path / "model.pt") == 0o600
