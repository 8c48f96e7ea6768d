"""Run PyPI ``tap-amplitude-api`` against another Export-API base URL.

The tap hard-codes ``BASE_AMPLITUDE_URL = "https://amplitude.com/api/2/export"`` as a module
constant that ``load_events`` reads at call time, so setting the attribute before ``main()`` is
enough. Usage (inside the tap's own venv; every argument goes to the tap)::

    AMPLITUDE_EXPORT_URL=http://127.0.0.1:PORT/api/2/export \\
        .venv-tap-amplitude-api/bin/python tests/support/run_tap_amplitude_api.py --config c.json
"""

from __future__ import annotations

import os

import tap_amplitude  # PyPI tap-amplitude-api installs this module name


def main() -> None:
    url = os.environ.get("AMPLITUDE_EXPORT_URL")
    if url:
        tap_amplitude.BASE_AMPLITUDE_URL = url
    tap_amplitude.main()


if __name__ == "__main__":
    main()
