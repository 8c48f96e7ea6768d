#!/usr/bin/env bash
# The README's test command: bootstraps .venv (only Python 3.10 to 3.13 and pip needed), then lints
# and runs the whole suite. Extra arguments go to pytest.
#
# Environment: PYTHON (interpreter for .venv; default python3). When it differs from the one .venv
# was built with, .venv is rebuilt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"

PY="$(require_python test.sh)" || exit 1
LOG="$ROOT/.venv-install.log"
install_failed() {
  printf 'test.sh: FAILED: %s\n' "$1" >&2
  show_log_errors "$LOG" "$ROOT" "test.sh"
  exit 1
}
if ! venv_matches .venv "$PY"; then
  echo "==> creating .venv ($(python_identity "$PY"))" >&2
  rm -rf .venv
  "$PY" -m venv .venv >"$LOG" 2>&1 || install_failed "could not create .venv with $PY"
  mark_venv .venv "$PY"
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "==> installing target-planhat and its test extras into .venv" >&2
  {
    .venv/bin/python -m pip install --disable-pip-version-check --quiet --upgrade pip &&
      .venv/bin/python -m pip install --disable-pip-version-check --quiet -e '.[test]'
  } >"$LOG" 2>&1 || install_failed "pip install -e '.[test]'"
  rm -f .venv/.installed-* && touch "$stamp"
fi
.venv/bin/ruff check target_planhat tests benchmarks scripts
.venv/bin/ruff format --check target_planhat tests benchmarks scripts
.venv/bin/lint-imports --no-cache
.venv/bin/mypy target_planhat
exec .venv/bin/python -m pytest "$@"
