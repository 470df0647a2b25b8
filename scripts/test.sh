#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then lint and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
# Browser tests drive Debian's chromium (a test tool's own browser download fails here).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  else
    sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the layers of docs/architecture.md (contracts in pyproject.toml)
# Two processes (the machine's cores), each test file whole in one of them (module fixtures are
# built once); PRUNESCAPE_TEST_PROCESSES=0 runs everything in this one.
exec .venv/bin/pytest -n "${PRUNESCAPE_TEST_PROCESSES:-2}" --dist loadfile "$@"
