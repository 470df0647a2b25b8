"""Run the real prunescape app (API + mounted dashboard) for the browser tests:
`python -m tests.frontend.serve_app PORT DATA_DIR [off|writes|all]`. Migrates a fresh SQLite
database first; with `writes`, writes need a token (team mode, PRUNESCAPE_AUTH=1); with `all`,
reads too."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from backend.api import create_app
from backend.db.migrate import upgrade
from backend.settings import Settings


def main(port: int, data_dir: str, auth: str = "off") -> None:
    settings = Settings(data_dir=Path(data_dir), check_dataset_paths=False, auth=auth)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings)
    app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], auth=(sys.argv[3:4] or ["off"])[0])
