#!/usr/bin/env bash
# A wheel built from this checkout installs and runs on each supported Python.
#
#   bash scripts/check_pythons.sh              # 3.10 3.11 3.12 3.13, whichever are found
#   bash scripts/check_pythons.sh 3.12 3.13    # only these
#
# Builds one wheel (pip wheel, the build backend's warnings kept: any SetuptoolsDeprecationWarning
# or other build warning fails the check), then for each version found (pythonX.Y on the PATH,
# else a pyenv install of it) makes a fresh venv, installs the wheel, runs `target-planhat --about`
# and a tiny dry run of the bundled sample. One line per version:
#   check_pythons: 3.12 ok (Python 3.12.1)
#   check_pythons: 3.10 not found: skipped
#   check_pythons: 3.13 FAILED: <the failing step>
# Exit 1 when any version found failed, or when none was found.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VERSIONS=("$@")
[[ ${#VERSIONS[@]} -gt 0 ]] || VERSIONS=(3.10 3.11 3.12 3.13)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/check-pythons.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

find_python() {  # find_python 3.12: an interpreter of exactly that minor version, or nothing
  local version="$1" candidate latest
  local candidates=("python$version")
  if command -v pyenv >/dev/null 2>&1; then
    latest="$(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}\.[0-9]+$" |
      sort -V | tail -n 1 || true)"
    [[ -z "$latest" ]] || candidates+=("$(pyenv root)/versions/$latest/bin/python$version")
  fi
  for candidate in "${candidates[@]}"; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      [[ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" == "$version" ]]; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

declare -A FOUND=()
for version in "${VERSIONS[@]}"; do
  if py="$(find_python "$version")"; then
    FOUND[$version]="$py"
  fi
done
if [[ ${#FOUND[@]} -eq 0 ]]; then
  echo "check_pythons: none of ${VERSIONS[*]} found (PATH, pyenv)" >&2
  exit 1
fi

# 1. One wheel, built by the first interpreter found, with the backend's output kept.
for version in "${VERSIONS[@]}"; do
  if [[ -n "${FOUND[$version]:-}" ]]; then
    BUILDER="${FOUND[$version]}"
    break
  fi
done
BUILD_LOG="$WORK/build.log"
if ! "$BUILDER" -m pip wheel --disable-pip-version-check --no-deps -v -w "$WORK/dist" . \
  >"$BUILD_LOG" 2>&1; then
  echo "check_pythons: FAILED: building the wheel:" >&2
  grep -E -m 5 'ERROR|Error|error:' "$BUILD_LOG" >&2 || tail -n 20 "$BUILD_LOG" >&2
  exit 1
fi
WHEEL="$(ls "$WORK"/dist/target_planhat-*.whl)"
if grep -E 'Warning|warning:' "$BUILD_LOG" | grep -v -E 'is ignored: it is neither|pip version|byte-compiling is disabled' >"$WORK/warnings"; then
  echo "check_pythons: FAILED: the build warns:" >&2
  sort -u "$WORK/warnings" | head -n 10 >&2
  exit 1
fi
echo "check_pythons: built $(basename "$WHEEL") without warnings ($("$BUILDER" --version 2>&1))"

# 2. Each version: a fresh venv, the wheel, --about, a tiny dry run.
head -n 12 data/sample/amplitude-events.singer.jsonl >"$WORK/input.jsonl"
failed=0
for version in "${VERSIONS[@]}"; do
  py="${FOUND[$version]:-}"
  if [[ -z "$py" ]]; then
    echo "check_pythons: $version not found: skipped"
    continue
  fi
  dir="$WORK/py$version"
  mkdir -p "$dir"
  log="$dir/log"
  step() {  # step DESCRIPTION COMMAND...: run it, its output to the log; say which step failed
    local what="$1"
    shift
    if ! "$@" >>"$log" 2>&1; then
      echo "check_pythons: $version FAILED: $what:"
      grep -v 'is ignored: it is neither' "$log" | grep -E -m 3 'ERROR|Error|error' | cut -c1-300 || true
      grep -v 'is ignored: it is neither' "$log" | tail -n 5 | cut -c1-300
      return 1
    fi
  }
  cat >"$dir/config.json" <<EOF
{"dry_run": true, "dry_run_path": "$dir/dry-run.jsonl", "dead_letter_path": "$dir/rejected.jsonl",
 "ledger_path": "$dir/ledger.sqlite"}
EOF
  if step "python -m venv" "$py" -m venv "$dir/venv" &&
    step "pip install the wheel" "$dir/venv/bin/python" -m pip install --disable-pip-version-check \
      -q "$WHEEL" &&
    step "target-planhat --about" "$dir/venv/bin/target-planhat" --about &&
    step "a dry run" sh -c "'$dir/venv/bin/target-planhat' --config '$dir/config.json' \
      <'$WORK/input.jsonl' >'$dir/state.out'" &&
    step "the dry run wrote activities" test -s "$dir/dry-run.jsonl"; then
    echo "check_pythons: $version ok ($("$dir/venv/bin/python" --version 2>&1), $(wc -l <"$dir/dry-run.jsonl") activities)"
  else
    failed=1
  fi
done
exit "$failed"
