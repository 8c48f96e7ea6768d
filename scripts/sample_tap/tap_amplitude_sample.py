"""``tap-amplitude-sample``: the real PyPI ``tap-amplitude-api`` 0.1.8, served a bundled export.

The demo runs the tap that production uses, unchanged, against ``AmplitudeExport`` (a local
Export-API stand-in on 127.0.0.1, started in this process) instead of amplitude.com. Three things
differ from a production run, all outside the tap's code:

* ``BASE_AMPLITUDE_URL``: the tap reads this module constant at call time, so it is pointed at the
  stand-in before ``main()``;
* the tap's clock: it exports whole days from its bookmark up to ``datetime.now()``; ``end_date``
  pins "now" so a replay of a fixed sample gives the same records every time;
* ``start_date``: without a bookmark the tap starts two days before now; the sample spans three
  days, so when Meltano passes no state (``--full-refresh``) this starts at ``start_date``.

Config (the tap's ``--config``): ``auth_user`` / ``auth_password`` (the tap's own settings; the
stand-in expects exactly these), ``export_file`` (Export-API JSON lines, e.g.
``data/sample/amplitude-export.jsonl``), ``start_date``, ``end_date`` (ISO 8601, UTC).
Every command-line argument goes to the tap as given.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import tap_amplitude  # PyPI tap-amplitude-api installs this module name
from amplitude_export import AmplitudeExport

_BOOKMARK_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the tap's own to_datetime/from_datetime form


def _option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _utc_naive(text: str) -> dt.datetime:
    """ISO 8601 text as the naive UTC datetime the tap works with."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def _pinned_clock(now: dt.datetime) -> type[dt.datetime]:
    class PinnedClock(dt.datetime):
        """``datetime`` for the tap's module, with ``now()`` fixed (strptime etc. unchanged)."""

        @classmethod
        def now(cls, tz: Any = None) -> PinnedClock:  # type: ignore[override]
            return cls.combine(now.date(), now.time())

    return PinnedClock


def _load_events(path: str) -> list[dict[str, Any]]:
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main() -> None:
    argv = sys.argv[1:]
    config_path = _option(argv, "--config")
    if config_path is None or "--discover" in argv:
        tap_amplitude.main()  # discovery and usage errors need no export
        return
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    export_file = config.get("export_file")
    if not export_file:
        sys.exit(
            "tap-amplitude-sample: the setting export_file (Export-API JSON lines) is required"
        )
    events = _load_events(export_file)
    with (
        AmplitudeExport(
            events,
            api_key=str(config.get("auth_user", "")),
            secret_key=str(config.get("auth_password", "")),
        ) as export,
        tempfile.TemporaryDirectory() as scratch,
    ):
        tap_amplitude.BASE_AMPLITUDE_URL = export.export_url
        if config.get("end_date"):
            tap_amplitude.datetime = _pinned_clock(_utc_naive(config["end_date"]))
        if config.get("start_date") and _option(argv, "--state") is None:
            state = Path(scratch) / "state.json"
            start = _utc_naive(config["start_date"]).strftime(_BOOKMARK_FORMAT)
            state.write_text(json.dumps({"event": start}), encoding="utf-8")
            sys.argv = [sys.argv[0], *argv, "--state", str(state)]
        tap_amplitude.main()


if __name__ == "__main__":
    main()
