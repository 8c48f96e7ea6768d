# Shared by scripts/demo.sh, scripts/test.sh and scripts/check_pythons.sh (sourced, not run):
# pick the interpreter, say plainly when it cannot work, rebuild a venv when the interpreter
# changed, and show the line that failed instead of a wall of log.

# The lowest Python pyproject.toml declares (requires-python = ">=3.10").
python_env_min_version() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  sed -n 's/^requires-python *= *">=\([0-9]*\.[0-9]*\).*/\1/p' "$root/pyproject.toml" | head -n 1
}

# "3.12.1 /root/.pyenv/versions/3.12.1/bin/python3.12": what a venv records about its interpreter.
python_identity() {
  "$1" -c 'import os, sys; print(sys.version.split()[0], os.path.realpath(sys.executable))'
}

# require_python WHO: print the interpreter to use ($PYTHON, else python3, else python), or explain
# on stderr why it cannot work (missing, too old, no venv module) and return 1.
require_python() {
  local who="$1" py="${PYTHON:-}" min version
  min="$(python_env_min_version)"
  if [[ -z "$py" ]]; then
    if command -v python3 >/dev/null 2>&1; then
      py=python3
    elif command -v python >/dev/null 2>&1; then
      py=python
    else
      printf '%s: FAILED: no python3 on the PATH. Install Python %s or newer, or set PYTHON=/path/to/python3.\n' \
        "$who" "$min" >&2
      return 1
    fi
  fi
  if ! command -v "$py" >/dev/null 2>&1; then
    printf '%s: FAILED: PYTHON=%s is not an executable on the PATH.\n' "$who" "$py" >&2
    return 1
  fi
  if ! version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>&1)"; then
    printf '%s: FAILED: %s does not run: %s\n' "$who" "$py" "$version" >&2
    return 1
  fi
  if ! "$py" -c "import sys; sys.exit(sys.version_info[:2] < tuple(map(int, '$min'.split('.'))))"; then
    printf '%s: FAILED: %s is Python %s; target-planhat needs Python %s or newer (requires-python in pyproject.toml).\n' \
      "$who" "$py" "$version" "$min" >&2
    printf '%s: set PYTHON to a newer interpreter, e.g. PYTHON=python3.12 bash %s\n' "$who" "$0" >&2
    return 1
  fi
  if ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    printf '%s: FAILED: %s (Python %s) has no working venv module (ensurepip is missing).\n' \
      "$who" "$py" "$version" >&2
    printf '%s: on Debian/Ubuntu: apt-get install python%s-venv\n' "$who" "$version" >&2
    return 1
  fi
  printf '%s\n' "$py"
}

# venv_matches VENV PY: true when VENV was built by mark_venv with this same interpreter and its
# python still runs (an upgraded or removed base interpreter leaves a venv that does not).
venv_matches() {
  local venv="$1" py="$2"
  [[ -x "$venv/bin/python" ]] || return 1
  [[ -f "$venv/.interpreter" ]] || return 1
  "$venv/bin/python" -c 'pass' >/dev/null 2>&1 || return 1
  [[ "$(cat "$venv/.interpreter")" == "$(python_identity "$py")" ]]
}

mark_venv() {
  python_identity "$2" >"$1/.interpreter"
}

# show_log_errors LOG ROOT WHO: the first lines of LOG that say what went wrong (pip's "ERROR:",
# Meltano's "[error ...]", a Python exception), then the last few lines and where the log is.
show_log_errors() {
  local log="$1" root="$2" who="$3" errors
  [[ -s "$log" ]] || return 0
  errors="$(grep -v -e 'is ignored: it is neither a file nor a directory' -e '^ *$' "$log" |
    grep -E -m 6 -e '(^|[^A-Za-z])(ERROR|Error|error)([: ]|$)' -e '^\S*(Error|Exception)\b' \
      -e '\[error' -e 'No matching distribution' -e 'requires a different Python' || true)"
  if [[ -n "$errors" ]]; then
    printf '%s: what went wrong (first error lines of the log):\n' "$who" >&2
    printf '%s\n' "$errors" | cut -c1-400 | sed 's/^/    /' >&2
  fi
  printf -- '--- last lines of %s ---\n' "${log#"$root"/}" >&2
  grep -v -e 'is ignored: it is neither a file nor a directory' "$log" | tail -n 8 | cut -c1-400 >&2 || true
  printf '%s: full log: %s\n' "$who" "$log" >&2
}
