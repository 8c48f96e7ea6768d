"""The performance benchmark (issue 7). One command:

    .venv/bin/python benchmarks/run.py --events 100000          # ~2 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --events 100000 --rss    # + peak RSS at 1M events

Generates N Airbyte-shaped Amplitude events (~830 bytes, STATE every 1,000) into a temp file and
runs, alternating, ``--rounds`` times each:

(a) the ``target-planhat`` CLI (subprocess; default settings except ``tenant_token``/``api_url``
    to a loopback receiver that acknowledges at once, and ledger/dead-letter in a temp dir);
(b) a do-nothing SDK ``BatchSink`` target with default settings (``noop_target.py``);
(c) the floor: decode every line, map the default fields by hand, encode with orjson, in-process;
(d) the SDK's own floor: the do-nothing target of (b) with every switch the SDK offers set for
    speed (MsgSpecReader, ``validate_records: false``, no timestamp parsing). No SDK target can
    be faster per record, so d/c bounds a/c for any target built on the SDK.

(e) (a) with three metric rules and a roll-up (issue 13); ``--skip-metrics`` leaves it out;
(f) (a) with the unmatched hold (issue 12): ``planhat_api_token`` set and a Planhat REST stand-in
    on 127.0.0.1 serving ``--rest-companies`` companies and ``--rest-endusers`` end users (the
    ids are listed at start-up, as in a first run or one after ``planhat_ids_ttl_minutes``),
    every activity checked, the few of one unknown company held; ``--skip-hold`` leaves it out.

Byte-compiles the package(s) under test first (``precompile``), then prints events/s per round,
the medians, a/b and a/c, e/a and f/a, peak RSS of (a), and the per-record cost of
``shapes.to_canonical`` on each tap's shape. Only ratios from one run are comparable: the machine
is shared.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the REST stand-in of the tests (tests/support)

import floor  # noqa: E402
import generate  # noqa: E402
import shape_cost  # noqa: E402
from receiver import FastReceiver  # noqa: E402

from tests.support.planhat_rest import PlanhatRestStandIn  # noqa: E402

BIN = Path(sys.executable).parent
TARGET = str(BIN / "target-planhat")
TOKEN = "bench-token"
CPU: list[float] = []  # CPU seconds of each subprocess, in order
ID_LOADS: list[float] = []  # (f): seconds each run spent listing Planhat's ids (its log lines)


def _spawn(
    argv: list[str], workdir: Path, events_file: Path, env: dict[str, str] | None = None
) -> tuple[float, int, int, str]:
    """Run ``argv`` with ``events_file`` as stdin (as Meltano pipes a tap into a target).

    Return (seconds, exit code, peak RSS in kB of that process, stderr). CPU seconds (user +
    system) of the process are added to ``CPU``.
    """
    out = open(workdir / "stdout", "wb")  # noqa: SIM115
    err = open(workdir / "stderr", "wb")  # noqa: SIM115
    stdin = open(events_file, "rb")  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, cwd=workdir, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    CPU.append(usage.ru_utime + usage.ru_stime)
    for handle in (stdin, out, err):
        handle.close()
    return seconds, proc.returncode, usage.ru_maxrss, (workdir / "stderr").read_text()


def _report(stderr: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in stderr.splitlines():
        at = line.find('{"type":"planhat_delivery_report"')
        if at >= 0:
            found = json.loads(line[at:])
    return found


# (e): three metric rules (issue 13's recipes) and a roll-up of the chattiest actions. The REST
# token serves the metrics only: the id check is (f).
METRICS_CONFIG: dict[str, Any] = {
    "planhat_api_token": "bench-api-token",
    "check_planhat_ids": False,
    "metrics": [
        {
            "dimensionId": "daily_active_users",
            "externalId": "$.groups.company",
            "aggregate": "count_distinct",
            "value": "$.user_id",
        },
        {
            "dimensionId": "dashboards_viewed",
            "model": "EndUser",
            "externalId": "$.user_id",
            "actions": ["Viewed Dashboard"],
        },
        {
            "dimensionId": "time_in_app_ms",
            "externalId": "$.groups.company",
            "aggregate": "sum",
            "value": "$.event_properties.duration_ms",
        },
    ],
    "rollup": {"actions": ["Clicked Button", "session_*"], "per": "hour"},
}


REST_TOKEN = "bench-rest-token"
#: generate.py's companies are acme-0..acme-149 and its users user-0..user-1999; Planhat knows
#: all but this company and its users, so about 1 activity in 150 is held.
UNKNOWN_COMPANY = 149


def rest_stand_in(companies: int, endusers: int) -> PlanhatRestStandIn:
    """(f)'s Planhat REST API: the generator's companies and users among ``companies`` /
    ``endusers`` in all (the rest fillers), all but one company and its users."""
    known_companies = [f"acme-{n}" for n in range(150) if n != UNKNOWN_COMPANY]
    fillers = [f"co-{n:06d}" for n in range(max(0, companies - len(known_companies)))]
    known_users = [
        {"externalId": f"user-{n}", "email": f"user{n}@example.com"}
        for n in range(2000)
        if n % 150 != UNKNOWN_COMPANY
    ]
    other_users = [
        {"externalId": f"person-{n}", "email": f"person{n}@example.org"}
        for n in range(max(0, endusers - len(known_users)))
    ]
    return PlanhatRestStandIn(
        companies=known_companies + fillers, endusers=known_users + other_users, token=REST_TOKEN
    )


def hold_config(rest: PlanhatRestStandIn) -> dict[str, Any]:
    """(f): the unmatched hold on, against the stand-in."""
    return {"planhat_api_token": REST_TOKEN, "planhat_api_url": rest.url}


def run_target(
    events_file: Path,
    receiver: FastReceiver,
    expected: int,
    pythonpath: str | None = None,
    extra: dict[str, Any] | None = None,
    common: dict[str, Any] | None = None,
) -> tuple[float, int]:
    """(a): the CLI; ``pythonpath`` runs another copy of the package (a before/after check);
    ``extra`` adds settings ((e): metrics and a roll-up, (f): the hold); ``common`` adds
    settings that leave the run's check as it is (``--set``)."""
    with tempfile.TemporaryDirectory(prefix="bench-a-") as tmp:
        workdir = Path(tmp)
        config = {
            "tenant_token": TOKEN,
            "api_url": receiver.url,
            "ledger_path": str(workdir / "ledger.sqlite"),
            "dead_letter_path": str(workdir / "rejected.jsonl"),
            **(common or {}),
            **(extra or {}),
        }
        (workdir / "config.json").write_text(json.dumps(config))
        receiver.reset()
        env = None
        if pythonpath:
            env = {**os.environ, "PYTHONPATH": pythonpath}
        seconds, code, rss, stderr = _spawn(
            [TARGET, "--config", "config.json"], workdir, events_file, env
        )
        if code != 0:
            sys.exit(f"target-planhat failed ({code}):\n{stderr[-3000:]}")
        report = _report(stderr)
        sent = report.get("sent")
        if extra and "metrics" not in extra:
            # (f): every activity sent or held, some held, none unchecked.
            held = report.get("held", 0)
            if sent + held != expected or not held or report.get("sent_unmatched"):
                sys.exit(f"target-planhat with the hold: unexpected report {report}")
            loads = re.findall(r"Loaded \d+ \w+ ids from Planhat in ([\d.]+)s", stderr)
            ID_LOADS.append(sum(float(x) for x in loads))
            return seconds, rss
        if extra:
            # Rolled-up events arrive as fewer activities; metric points go to the same receiver.
            rolled = report["rollup_events"] - report["rollup_activities"]
            if sent + rolled != expected or not report["metrics_sent"] or not rolled:
                sys.exit(f"target-planhat with metrics: unexpected report {report}")
            return seconds, rss
        deadline = time.monotonic() + 5
        while receiver.activities < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        if sent != expected or receiver.activities != expected:
            sys.exit(
                f"target-planhat sent {sent}, receiver got {receiver.activities}, "
                f"expected {expected}"
            )
        return seconds, rss


def run_noop(events_file: Path, bare: bool = False) -> tuple[float, int]:
    """(b), or with ``bare`` (d): the do-nothing SDK target, default or fastest settings."""
    with tempfile.TemporaryDirectory(prefix="bench-b-") as tmp:
        workdir = Path(tmp)
        (workdir / "config.json").write_text('{"validate_records": false}' if bare else "{}")
        argv = [sys.executable, str(HERE / "noop_target.py"), "--config", "config.json"]
        env = {**os.environ, "TARGET_NOOP_BARE": "1" if bare else "0"}
        seconds, code, rss, stderr = _spawn(argv, workdir, events_file, env)
        if code != 0:
            sys.exit(f"noop target failed ({code}):\n{stderr[-3000:]}")
        return seconds, rss


def run_floor(events_file: Path, expected: int) -> float:
    start = time.perf_counter()
    _, encoded, _ = floor.run(events_file)
    seconds = time.perf_counter() - start
    if encoded != expected:
        sys.exit(f"floor encoded {encoded}, expected {expected}")
    return seconds


def precompile(also: str | None) -> list[Path]:
    """Byte-compile the package(s) under test before timing them, as ``pip install`` does.

    With ``PYTHONDONTWRITEBYTECODE`` set (this shared machine sets it) no ``__pycache__`` is
    ever written, so every run would compile its package from source first: about 0.2 s of CPU
    for today's 35 modules, 0.08 s for the 20 of 0.1.0, which an installed target never spends.
    """
    found = importlib.util.find_spec("target_planhat")
    dirs = [Path(found.origin).parent] if found is not None and found.origin else []
    if also:
        dirs.append(Path(also) / "target_planhat")
    compiled = [d for d in dirs if d.is_dir()]
    for directory in compiled:
        compileall.compile_dir(str(directory), quiet=1)
    return compiled


def _expected(events_file: Path) -> int:
    """Activities the default config sends: events with a user_id (the rest are dead-lettered)."""
    return sum(1 for line in open(events_file, "rb") if b'"user_id":"' in line)


def _variant(
    key: str,
    label: str,
    run: tuple[float, int],
    n: int,
    rates: dict[str, list[float]],
    cpu_rates: dict[str, list[float]],
    round_no: int,
    note: str = "",
) -> None:
    """Record and print one variant's round: ``run`` is what ``run_target`` returned for it."""
    seconds, rss = run
    name = "a'" if key == "x" else key
    rates[key].append(n / seconds)
    cpu_rates[key].append(n / CPU[-1])
    print(
        f"round {round_no}: ({name}) {label}: "
        f"{rates[key][-1]:8,.0f} ev/s (cpu {cpu_rates[key][-1]:,.0f}, "
        f"peak RSS {rss / 1024:.0f} MB{note})",
        flush=True,
    )


def _setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of ``--set``: the value as JSON where it parses, else as text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        sys.exit(f"--set {text!r}: expected NAME=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss", action="store_true", help="also peak RSS of (a) at 1M events")
    parser.add_argument("--rss-events", type=int, default=1_000_000)
    parser.add_argument("--skip-shapes", action="store_true")
    parser.add_argument(
        "--skip-metrics", action="store_true", help="leave out (e): metrics and a roll-up"
    )
    parser.add_argument(
        "--skip-hold", action="store_true", help="leave out (f): the unmatched hold"
    )
    parser.add_argument("--rest-companies", type=int, default=12_000, metavar="N")
    parser.add_argument("--rest-endusers", type=int, default=50_000, metavar="N")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the receiver waits this long before answering each POST (default 0)",
    )
    parser.add_argument(
        "--only-target",
        action="store_true",
        help="run only (a) (and (a') with --also): e.g. (a) at 100k against (a) at 1M events",
    )
    parser.add_argument(
        "--also",
        metavar="PYTHONPATH",
        help="also run (a') target-planhat with this PYTHONPATH first (a copy of target_planhat "
        "with a proposed change): before/after in one run",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of (a) and (a'), VALUE as JSON where it parses (e.g. dedupe=false): "
        "which part of a before/after difference a feature accounts for",
    )
    args = parser.parse_args()
    common = dict(_setting(text) for text in args.set)

    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        FastReceiver(latency=args.latency) as receiver,
        rest_stand_in(args.rest_companies, args.rest_endusers) as rest,
    ):
        events_file = generate.write(Path(tmp) / "events.jsonl", args.events)
        compiled = precompile(args.also)
        print("byte-compiled before timing: " + ", ".join(str(d) for d in compiled))
        expected = _expected(events_file)
        size = events_file.stat().st_size
        print(
            f"{args.events} events, {size / args.events:.0f} bytes/line, "
            f"{expected} with a user_id; {os.cpu_count()} CPUs; "
            f"receiver latency {args.latency:g}s per POST"
        )
        if common:
            print(f"settings of (a) and (a') besides the defaults: {json.dumps(common)}")
        # Events/s by wall time (what a user sees) and by CPU time of the process (user+system,
        # steadier on a shared machine).
        rates: dict[str, list[float]] = {k: [] for k in ("a", "b", "c", "d", "x", "e", "f")}
        cpu_rates: dict[str, list[float]] = {k: [] for k in rates}
        rss_a: list[int] = []
        n = args.events

        def run_also(round_no: int) -> None:
            run = run_target(events_file, receiver, expected, args.also, common=common)
            label = f"target-planhat, PYTHONPATH={args.also}"
            _variant("x", label, run, n, rates, cpu_rates, round_no)

        for round_no in range(1, args.rounds + 1):
            # Measured: the second run of a round is a few per cent faster than the first (in
            # 40 alternating pairs, 5%), so with --only-target even rounds run (a') first and
            # neither side always has the better place.
            also_first = args.only_target and args.also and round_no % 2 == 0
            if also_first:
                run_also(round_no)
            seconds, rss = run_target(events_file, receiver, expected, common=common)
            rates["a"].append(n / seconds)
            cpu_rates["a"].append(n / CPU[-1])
            rss_a.append(rss)
            if args.only_target:
                print(
                    f"round {round_no}: (a) target-planhat {rates['a'][-1]:8,.0f} ev/s "
                    f"(cpu {cpu_rates['a'][-1]:,.0f}, peak RSS {rss / 1024:.0f} MB)",
                    flush=True,
                )
            seconds_b, rss_b = (0.0, 0) if args.only_target else run_noop(events_file)
            if args.only_target:
                if args.also and not also_first:
                    run_also(round_no)
                continue
            rates["b"].append(n / seconds_b)
            cpu_rates["b"].append(n / CPU[-1])
            cpu_start = time.process_time()
            rates["c"].append(n / run_floor(events_file, expected))
            cpu_rates["c"].append(n / (time.process_time() - cpu_start))
            seconds_d, _ = run_noop(events_file, bare=True)
            rates["d"].append(n / seconds_d)
            cpu_rates["d"].append(n / CPU[-1])
            print(
                f"round {round_no}: (a) target-planhat {rates['a'][-1]:8,.0f} ev/s "
                f"(cpu {cpu_rates['a'][-1]:,.0f}, peak RSS {rss / 1024:.0f} MB) | "
                f"(b) no-op SDK target {rates['b'][-1]:8,.0f} ev/s (cpu {cpu_rates['b'][-1]:,.0f}, "
                f"peak RSS {rss_b / 1024:.0f} MB) | (c) floor {rates['c'][-1]:8,.0f} ev/s "
                f"(cpu {cpu_rates['c'][-1]:,.0f}) | (d) bare SDK {rates['d'][-1]:8,.0f} ev/s "
                f"(cpu {cpu_rates['d'][-1]:,.0f})",
                flush=True,
            )
            if not args.skip_metrics:
                run = run_target(events_file, receiver, expected, extra=METRICS_CONFIG)
                label = "target-planhat, 3 metric rules + roll-up"
                _variant("e", label, run, n, rates, cpu_rates, round_no)
            if not args.skip_hold:
                run = run_target(events_file, receiver, expected, extra=hold_config(rest))
                label = (
                    f"target-planhat, the hold ({args.rest_companies:,} companies, "
                    f"{args.rest_endusers:,} end users)"
                )
                note = f"; {ID_LOADS[-1]:.1f}s of {run[0]:.1f}s listing the ids"
                _variant("f", label, run, n, rates, cpu_rates, round_no, note)
            if args.also:
                run_also(round_no)
        for label, table in (("wall", rates), ("cpu ", cpu_rates)):
            med = {key: statistics.median(values) for key, values in table.items() if values}
            if args.only_target:
                also = f"  (a') {med['x']:,.0f} ev/s  a'/a = {med['x'] / med['a']:.2f}"
                print(f"medians ({label}): (a) {med['a']:,.0f} ev/s{also if 'x' in med else ''}")
                if "x" in med:
                    # Each round's own ratio: the machine's drift between rounds cancels.
                    per_round = [a / x for a, x in zip(table["a"], table["x"], strict=True)]
                    print(
                        f"                a/a' per round: median {statistics.median(per_round):.3f}"
                        f", mean {statistics.mean(per_round):.3f} over {len(per_round)} rounds"
                    )
                continue
            print(
                f"medians ({label}): (a) {med['a']:,.0f} ev/s  (b) {med['b']:,.0f} ev/s  "
                f"(c) {med['c']:,.0f} ev/s   a/b = {med['a'] / med['b']:.2f} (goal >= 1.0)  "
                f"a/c = {med['a'] / med['c']:.2f} (goal >= 0.5)"
            )
            print(
                f"                (d) {med['d']:,.0f} ev/s   d/c = {med['d'] / med['c']:.2f} "
                f"(the SDK's record path doing nothing)  a/d = {med['a'] / med['d']:.2f}"
            )
            if "e" in med:
                print(
                    f"                (e) {med['e']:,.0f} ev/s with 3 metric rules and a "
                    f"roll-up   e/a = {med['e'] / med['a']:.2f}  e/b = {med['e'] / med['b']:.2f}"
                )
            if "f" in med:
                print(
                    f"                (f) {med['f']:,.0f} ev/s with the unmatched hold   "
                    f"f/a = {med['f'] / med['a']:.2f}  f/b = {med['f'] / med['b']:.2f}"
                )
            if args.also:
                print(
                    f"                (a') {med['x']:,.0f} ev/s   a'/a = {med['x'] / med['a']:.2f}"
                    f"  a'/b = {med['x'] / med['b']:.2f}  a'/c = {med['x'] / med['c']:.2f}"
                )
        peak_small = max(rss_a)
        print(f"peak RSS (a) at {args.events:,} events: {peak_small / 1024:.0f} MB")

        if not args.skip_shapes:
            print("per record: shapes.to_canonical | the fields the default config reads:")
            for name, whole, read in shape_cost.measure(events_file):
                print(f"  {name:58s} {whole:6.1f} us | {read:6.1f} us")

        if args.rss:
            events_file.unlink()
            big = generate.write(Path(tmp) / "events-big.jsonl", args.rss_events)
            seconds, rss = run_target(big, receiver, _expected(big))
            print(
                f"peak RSS (a) at {args.rss_events:,} events: {rss / 1024:.0f} MB "
                f"({rss / peak_small:.2f}x the {args.events:,}-event run; goal < 250 MB and "
                f"<= 1.2x) at {args.rss_events / seconds:,.0f} ev/s"
            )


if __name__ == "__main__":
    main()
