#!/usr/bin/env bash
# Create .venv and install prunescape into it (editable, with test extras when asked).
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  if [ -n "$extras" ]; then
    .venv/bin/pip install -q -e ".[$extras]"
  else
    .venv/bin/pip install -q -e .
  fi
  touch "$stamp"
fi
