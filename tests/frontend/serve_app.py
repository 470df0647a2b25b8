"""Run the real prunescape app (API + mounted dashboard) for the browser tests:
`python -m tests.frontend.serve_app PORT DATA_DIR`. Migrates a fresh SQLite database first."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from backend.api import create_app
from backend.db.migrate import upgrade
from backend.settings import Settings


def main(port: int, data_dir: str) -> None:
    settings = Settings(data_dir=Path(data_dir), check_dataset_paths=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
