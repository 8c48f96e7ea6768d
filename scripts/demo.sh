#!/usr/bin/env bash
# Demo: replay the bundled Amplitude sample through target-planhat with Meltano, in dry-run mode.
#
#   bash scripts/demo.sh
#
# Needs only Python 3.10 to 3.13 (with its venv module) and pip's access to PyPI. It creates
# .venv-meltano with meltano 4.4.1, installs the plugins defined in meltano.yml (the extractor is
# the real PyPI tap-amplitude-api, fed the bundled export by a local Export-API stand-in; the
# loader is this checkout), runs
#   meltano --environment dev run --full-refresh tap-amplitude-sample target-planhat
# and prints what landed in output/planhat-dry-run.jsonl. Nothing is sent to Planhat.
#
# Environment: PYTHON (interpreter for .venv-meltano and the plugins; default python3),
# DEMO_VERBOSE=1 (show Meltano's log). When the interpreter differs from the one .venv-meltano was
# built with, .venv-meltano and the plugin venvs are rebuilt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/python_env.sh
source "$ROOT/scripts/python_env.sh"

MELTANO_VERSION="4.4.1"
VENV="$ROOT/.venv-meltano"
OUT="$ROOT/output"
DRY_RUN_FILE="output/planhat-dry-run.jsonl"
REJECTED_FILE="output/planhat-rejected.jsonl"
REPORT_FILE="output/planhat-report.json"
LOG="$OUT/demo-meltano.log"
STATE_ID="dev:tap-amplitude-sample-to-target-planhat"

export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
export MELTANO_ENVIRONMENT=dev
# Meltano logs in colour to a terminal; the log file should stay plain.
export NO_COLOR=1

mkdir -p "$OUT"
: >"$LOG"

say() { printf '==> %s\n' "$*" >&2; }
fail() {
  printf 'demo: FAILED: %s\n' "$1" >&2
  show_log_errors "$LOG" "$ROOT" "demo"
  exit 1
}
run_logged() {  # run a command, its output to the log (and the terminal with DEMO_VERBOSE=1)
  if [[ "${DEMO_VERBOSE:-0}" == "1" ]]; then
    "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
  fi
  "$@" >>"$LOG" 2>&1
}

# 1. Meltano itself, in its own venv, built with the interpreter asked for; rebuilt (with the
#    plugin venvs Meltano made from it) when that interpreter changed since the last run.
PY="$(require_python demo)" || exit 1
MELTANO="$VENV/bin/meltano"
INSTALL_FLAGS=()
if ! venv_matches "$VENV" "$PY" || [[ ! -x "$MELTANO" ]] ||
  [[ "$("$MELTANO" --version 2>/dev/null)" != *"$MELTANO_VERSION"* ]]; then
  say "creating .venv-meltano with meltano==$MELTANO_VERSION ($(python_identity "$PY"))"
  rm -rf "$VENV"
  run_logged "$PY" -m venv "$VENV" || fail "could not create .venv-meltano with $PY"
  run_logged "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    "meltano==$MELTANO_VERSION" || fail "pip install meltano==$MELTANO_VERSION"
  mark_venv "$VENV" "$PY"
  INSTALL_FLAGS=(--clean)  # plugin venvs built by another interpreter are rebuilt too
fi

# 2. The plugins (idempotent: Meltano rebuilds a plugin venv only when its pip_url changed).
say "meltano install (log: ${LOG#"$ROOT"/})"
run_logged "$MELTANO" install "${INSTALL_FLAGS[@]}" || fail "meltano install"

# 3. A clean slate for the files this demo shows (the target appends to them).
#    The dedupe ledger (output/ledger.sqlite) is left alone on purpose: a dry run never reads or
#    writes it, so it cannot make a second demo run write fewer activities, and it may hold the
#    ids a live run already delivered, which must not be forgotten.
rm -f "$DRY_RUN_FILE" "$REJECTED_FILE" "$REPORT_FILE"

# 4. The pipeline. --full-refresh: Meltano passes no saved state to the tap (and still saves the
#    new state at the end), so the tap starts at its start_date and replays the whole sample.
#    Without it the tap would start from the saved bookmark, the end of the sample, and export
#    nothing, as a real incremental run with no new events would. Clearing state first
#    (`meltano state clear`) would also work but throws away the bookmark a reader may want.
say "meltano run --full-refresh tap-amplitude-sample target-planhat (environment dev, dry run)"
run_logged "$MELTANO" --environment dev run --full-refresh tap-amplitude-sample target-planhat ||
  fail "meltano run tap-amplitude-sample target-planhat"

[[ -f "$DRY_RUN_FILE" ]] || fail "the target wrote no $DRY_RUN_FILE"

# 5. A short human summary.
BOOKMARK="$("$MELTANO" --environment dev state get "$STATE_ID" 2>>"$LOG" || true)"
"$VENV/bin/python" - "$DRY_RUN_FILE" "$REJECTED_FILE" "$REPORT_FILE" "$BOOKMARK" <<'PY' || fail "summary"
import json
import sys
from collections import Counter
from pathlib import Path

dry_run, rejected, report, bookmark = sys.argv[1:5]


def lines(path):
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


activities = lines(dry_run)
rejects = lines(rejected)
print(f"target-planhat (dry run) wrote {len(activities)} Planhat activities to {dry_run}")
actions = Counter(a.get("action") for a in activities)
print("  by action: " + ", ".join(f"{k} {v}" for k, v in actions.most_common()))
users = Counter(a.get("externalId") or a.get("email") for a in activities)
print(f"  users: {len(users)}, companies: "
      f"{len({a.get('companyExternalId') for a in activities if a.get('companyExternalId')})}")
if rejects or Path(rejected).exists():
    print(f"{len(rejects)} events rejected (e.g. anonymous: no user id or email) -> {rejected}")
if Path(report).exists():
    print(f"delivery report: {report}")
if bookmark.strip():
    try:
        state = json.loads(bookmark)
        print(f"Meltano state (bookmark): {json.dumps(state.get('singer_state', state))}")
    except ValueError:
        pass
if not activities:
    sys.exit(f"no activity in {dry_run}: the sample should give some")
print("first activity:")
print(json.dumps(activities[0], indent=2, ensure_ascii=False))
PY
