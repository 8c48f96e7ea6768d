#!/usr/bin/env bash
# The README's test command: bootstraps .venv (only Python 3 and pip needed), then lints and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
.venv/bin/ruff check target_planhat tests benchmarks scripts
.venv/bin/ruff format --check target_planhat tests benchmarks scripts
exec .venv/bin/python -m pytest "$@"
