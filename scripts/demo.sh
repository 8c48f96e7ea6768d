#!/usr/bin/env bash
# Demo: replay the bundled Amplitude sample through target-planhat with Meltano, in dry-run mode.
#
#   bash scripts/demo.sh
#
# Needs only Python 3 (3.10 or 3.11: the sample replayer tap-singer-jsonl requires <3.12) and pip.
# It creates .venv-meltano with meltano 4.4.1 if missing, installs the plugins defined in
# meltano.yml (from PyPI; target-planhat from this checkout), runs
#   meltano --environment dev run --full-refresh tap-amplitude-sample target-planhat
# and prints what landed in output/planhat-dry-run.jsonl. Nothing is sent to Planhat.
#
# Environment: PYTHON (interpreter for .venv-meltano), DEMO_VERBOSE=1 (show Meltano's log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

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
  if [[ -s "$LOG" ]]; then
    printf -- '--- last lines of %s ---\n' "${LOG#"$ROOT"/}" >&2
    grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 40 >&2 || true
  fi
  exit 1
}
run_logged() {  # run a command, its output to the log (and the terminal with DEMO_VERBOSE=1)
  if [[ "${DEMO_VERBOSE:-0}" == "1" ]]; then
    "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
  fi
  "$@" >>"$LOG" 2>&1
}

pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    echo "$PYTHON"
    return
  fi
  # tap-singer-jsonl 0.1.0 installs only on Python <3.12; Meltano builds plugin venvs with its own
  # interpreter, so prefer a 3.11 / 3.10 when the default python3 is newer.
  local candidate
  for candidate in python3 python3.11 python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 12)))'; then
      echo "$candidate"
      return
    fi
  done
  echo python3
}

# 1. Meltano itself, in its own venv.
MELTANO="$VENV/bin/meltano"
if [[ ! -x "$MELTANO" ]] || [[ "$("$MELTANO" --version 2>/dev/null)" != *"$MELTANO_VERSION"* ]]; then
  PY="$(pick_python)"
  say "creating .venv-meltano with meltano==$MELTANO_VERSION ($("$PY" --version 2>&1))"
  if [[ ! -x "$VENV/bin/python" ]]; then
    run_logged "$PY" -m venv "$VENV" || fail "could not create $VENV with $PY"
  fi
  run_logged "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    "meltano==$MELTANO_VERSION" || fail "pip install meltano==$MELTANO_VERSION"
fi

# 2. The plugins (idempotent: Meltano rebuilds a plugin venv only when its pip_url changed).
say "meltano install (log: ${LOG#"$ROOT"/})"
run_logged "$MELTANO" install || fail "meltano install"

# 3. A clean slate for the files this demo shows (the target appends to them).
#    The dedupe ledger (output/ledger.sqlite) is left alone on purpose: a dry run never reads or
#    writes it, so it cannot make a second demo run write fewer activities, and it may hold the
#    ids a live run already delivered, which must not be forgotten.
rm -f "$DRY_RUN_FILE" "$REJECTED_FILE" "$REPORT_FILE"

# 4. The pipeline. --full-refresh: Meltano passes no saved state to the tap (and still saves the
#    new state at the end), so the run does not depend on what an earlier run left behind.
#    tap-singer-jsonl ignores incoming state anyway and always replays the whole file; the flag
#    makes "replay everything" explicit, and keeps the demo right if the sample tap is ever
#    swapped for one that honours state. Clearing state first (`meltano state clear`) would also
#    work but throws away the bookmark a reader may want to look at.
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
