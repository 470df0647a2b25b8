#!/usr/bin/env bash
# Install (first time only) and start prunescape on the embedded default with a demo study.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/prunescape serve --demo --data-dir "${PRUNESCAPE_DATA_DIR:-./data}" "$@"
