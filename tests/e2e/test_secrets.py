"""The tenant token appears in no byte the target writes, at DEBUG, when things go wrong.

The token is part of the request URL, and the libraries print URLs: ``urllib3`` logs every
request line at DEBUG, ``requests`` puts URLs in exception messages, a Planhat error page may echo
the path. Every run here sets ``TARGET_PLANHAT_LOGLEVEL=DEBUG`` (the SDK's plugin log-level
variable, which sets the root logger, so ``urllib3.connectionpool`` logs at DEBUG too) and each
test that makes a request first proves the leak channel is live: urllib3's request line is in
stderr, with the token masked.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import (
    TARGET_BIN,
    Result,
    base_config,
    event,
    run_target,
    schema_message,
    singer_lines,
    write_config,
)
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply

DEBUG = {"TARGET_PLANHAT_LOGLEVEL": "DEBUG"}
SECRET = TOKEN.encode()
URL_LINE = '"POST /analytics/bulk/*** HTTP/1.1"'


def everything(result: Result, tmp_path: Path) -> dict[str, bytes]:
    """Every output of the run: stdout, stderr and each file it wrote (not the config)."""
    outputs = {
        "stdout": result.stdout.encode("utf-8", "surrogateescape"),
        "stderr": result.stderr.encode("utf-8", "surrogateescape"),
    }
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path.name not in ("config.json", "logging.yml"):
            outputs[str(path.relative_to(tmp_path))] = path.read_bytes()
    return outputs


def assert_no_token(result: Result, tmp_path: Path) -> None:
    for name, data in everything(result, tmp_path).items():
        assert SECRET not in data, f"the token leaked into {name}"
        # Also its halves: a formatter wrapping a long line must not split it past the mask.
        assert SECRET[:9] not in data or SECRET[9:] not in data, name


def assert_debug_was_on(result: Result, *, requests_made: bool = True) -> None:
    assert "| DEBUG    |" in result.stderr, "DEBUG logging was not on: the test proves nothing"
    if requests_made:
        assert "urllib3.connectionpool" in result.stderr
        assert "Starting new HTTP connection" in result.stderr


def run_debug(
    tmp_path: Path,
    data: str | bytes,
    *,
    planhat: PlanhatReceiver | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Result:
    config = base_config(tmp_path, tenant_token=TOKEN, max_retry_seconds=1, **overrides)
    if planhat is not None:
        config.setdefault("api_url", planhat.url)
    return run_target(config, data, tmp_path, env={**DEBUG, **(env or {})})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- runs that succeed ------------------------------------------------------------------------


def test_successful_run_at_debug(tmp_path):
    with PlanhatReceiver() as planhat:
        result = run_debug(tmp_path, singer_lines([event(n) for n in range(5)]), planhat=planhat)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(planhat.kept_activities()) == 5
    assert_debug_was_on(result)
    assert URL_LINE + " 200" in result.stderr, "urllib3 logged the request line, token masked"
    assert_no_token(result, tmp_path)
    assert result.report["sent"] == 5


def test_token_from_the_environment(tmp_path):
    """``--config ENV``: the SDK reads ``TARGET_PLANHAT_TENANT_TOKEN``; it is masked the same."""
    with PlanhatReceiver() as planhat:
        config = base_config(tmp_path, api_url=planhat.url)
        path = write_config(tmp_path, config)
        result = run_target(
            path,
            singer_lines([event(1)]),
            tmp_path,
            extra_args=["--config", "ENV"],
            env={**DEBUG, "TARGET_PLANHAT_TENANT_TOKEN": TOKEN},
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert planhat.requests()[0].path == f"/analytics/bulk/{TOKEN}"
    assert_debug_was_on(result)
    assert URL_LINE in result.stderr
    assert_no_token(result, tmp_path)


def test_records_holding_the_token_string(tmp_path):
    """A record may carry the token (a misconfigured tap): it is rejected, never sent, and the
    dead-letter file and the logs mask it."""
    records = [
        event(1),
        event(2, user=None, event_properties={"token": TOKEN}),  # rejected: no identifier
        event(3, event_type=TOKEN),
        event(4, event_properties={"note": f"see /analytics/bulk/{TOKEN}"}),
    ]
    with PlanhatReceiver() as planhat:
        result = run_debug(tmp_path, singer_lines(records), planhat=planhat)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_debug_was_on(result)
    assert_no_token(result, tmp_path)
    assert len(planhat.kept_activities()) == 1
    assert result.report["rejected_by"] == {"no_identifier": 1, "contains_secret": 2}
    dead = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [d["input_line"] for d in dead] == [3, 4, 5]
    assert dead[0]["record"]["event_properties"] == {"token": "***"}
    assert dead[1]["activity"]["action"] == "***"
    assert result.report["top_actions"] == {"Login": 1}


def test_dry_run_of_a_record_holding_the_token(tmp_path):
    records = [event(1), event(2, event_properties={"note": TOKEN})]
    result = run_debug(tmp_path, singer_lines(records), dry_run=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "dry-run.jsonl").read_bytes().count(b"\n") == 1
    assert result.report["rejected_by"] == {"contains_secret": 1}
    assert_no_token(result, tmp_path)


def test_report_masks_the_token_in_names_from_the_input(tmp_path):
    """The report is printed, not logged: a stream name holding the token is masked on its own."""
    stream = f"events-{TOKEN}"
    data = "\n".join(
        [
            json.dumps(schema_message(stream)),
            json.dumps({"type": "RECORD", "stream": stream, "record": event(1)}),
        ]
    )
    result = run_debug(tmp_path, data + "\n", dry_run=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["skipped_streams"] == {"events-***": 1}
    assert_no_token(result, tmp_path)


def test_dry_run_at_debug(tmp_path):
    result = run_debug(tmp_path, singer_lines([event(1), event(2, user=None)]), dry_run=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_debug_was_on(result, requests_made=False)
    assert (tmp_path / "dry-run.jsonl").read_bytes().count(b"\n") == 1
    assert_no_token(result, tmp_path)


# --- runs that fail ---------------------------------------------------------------------------


def test_4xx_whose_body_echoes_the_url(tmp_path):
    body = json.dumps(
        {"error": "no tenant", "url": f"https://analytics.planhat.com/analytics/bulk/{TOKEN}"}
    ).encode()
    with PlanhatReceiver(lambda i, b: Reply(status=404, body=body)) as planhat:
        result = run_debug(tmp_path, singer_lines([event(1)]), planhat=planhat)
    assert result.returncode == 1
    assert_debug_was_on(result)
    assert URL_LINE + " 404" in result.stderr
    errors = [line for line in result.stderr.splitlines() if "| ERROR " in line]
    assert "HTTP 404" in errors[-1] and "/analytics/bulk/***" in errors[-1]
    assert_no_token(result, tmp_path)


def test_5xx_retried_until_given_up_echoing_the_url(tmp_path):
    body = f"<html>upstream error for POST /analytics/bulk/{TOKEN}</html>".encode()
    script = lambda i, b: Reply(status=503, body=body, headers={"Retry-After": "0"})  # noqa: E731
    with PlanhatReceiver(script) as planhat:
        result = run_debug(tmp_path, singer_lines([event(1)]), planhat=planhat)
    assert result.returncode == 1
    assert len(planhat.requests()) >= 2
    assert result.report["retries"] >= 1
    assert_debug_was_on(result)
    assert_no_token(result, tmp_path)


def test_connection_refused(tmp_path):
    result = run_debug(
        tmp_path, singer_lines([event(1)]), api_url=f"http://127.0.0.1:{closed_port()}"
    )
    assert result.returncode == 1
    assert_debug_was_on(result)
    assert "did not accept" in result.stderr
    assert_no_token(result, tmp_path)


def test_timeout(tmp_path):
    with PlanhatReceiver(lambda i, b: Reply(delay=3)) as planhat:
        result = run_debug(tmp_path, singer_lines([event(1)]), planhat=planhat, request_timeout=0.3)
    assert result.returncode == 1
    assert_debug_was_on(result)
    assert_no_token(result, tmp_path)


def test_on_invalid_record_fail_naming_a_record_whose_id_is_the_token(tmp_path):
    record = event(1, user=None, **{"$insert_id": TOKEN})
    result = run_debug(tmp_path, singer_lines([record]), on_invalid_record="fail", dry_run=True)
    assert result.returncode == 1
    assert "$insert_id=***" in result.stderr
    assert_no_token(result, tmp_path)


def test_unexpected_error_whose_message_holds_the_token(tmp_path):
    """A date field the SDK cannot parse: its error (and DEBUG traceback) quote the value."""
    result = run_debug(tmp_path, singer_lines([event(1, event_time=TOKEN)]), dry_run=True)
    assert_debug_was_on(result, requests_made=False)
    assert_no_token(result, tmp_path)


def test_input_line_holding_the_token(tmp_path):
    data = singer_lines([event(1)]) + f'{{"type": "RECORD", "token": "{TOKEN}"\n'
    result = run_debug(tmp_path, data, dry_run=True)
    assert result.returncode == 1
    assert "Invalid input: input line" in result.stderr
    assert_no_token(result, tmp_path)


def test_schema_violation_by_the_token(tmp_path):
    schema = schema_message()
    schema["schema"]["properties"]["user_id"] = {"type": "string", "maxLength": 3}
    lines = [
        json.dumps(schema),
        json.dumps({"type": "RECORD", "stream": "events", "record": event(1, user=TOKEN)}),
    ]
    result = run_debug(tmp_path, "\n".join(lines) + "\n", dry_run=True)
    assert result.returncode == 1
    assert_no_token(result, tmp_path)


def test_structured_logging_with_an_exception_holding_the_token(tmp_path):
    """The SDK's JSON log formatter renders exceptions itself, from the exception object."""
    (tmp_path / "logging.yml").write_text(
        "version: 1\n"
        "disable_existing_loggers: false\n"
        "formatters:\n"
        "  structured:\n"
        "    (): singer_sdk.logging.StructuredFormatter\n"
        "handlers:\n"
        "  console:\n"
        "    class: logging.StreamHandler\n"
        "    formatter: structured\n"
        "    stream: ext://sys.stderr\n"
        "root:\n"
        "  level: DEBUG\n"
        "  handlers: [console]\n"
    )
    env = {"SINGER_SDK_LOG_CONFIG": str(tmp_path / "logging.yml")}
    with PlanhatReceiver(lambda i, b: Reply(status=400, body=TOKEN.encode())) as planhat:
        result = run_debug(tmp_path, singer_lines([event(1)]), planhat=planhat, env=env)
    assert result.returncode == 1
    assert '"logger_name":"urllib3.connectionpool"' in result.stderr
    assert_no_token(result, tmp_path)
    # And an unexpected exception whose message holds the token, logged with exc_info at DEBUG.
    result = run_debug(tmp_path, singer_lines([event(1, event_time=TOKEN)]), dry_run=True, env=env)
    assert_no_token(result, tmp_path)


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_url": f"ftp://analytics.planhat.com/{TOKEN}"},
        {"api_url": f"http://{TOKEN}.example.com"},
        {"mapping": {"action": f"$.[[{TOKEN}"}},
        {"dedupe_key": [f"$.{TOKEN}["]},
    ],
    ids=["api_url_scheme", "api_url_host", "mapping", "dedupe_key"],
)
def test_config_errors_quoting_the_token(tmp_path, overrides):
    result = run_debug(tmp_path, "not read\n", **overrides)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Configuration error" in result.stderr
    assert_no_token(result, tmp_path)


def test_token_of_the_wrong_type_is_not_quoted(tmp_path):
    config = base_config(tmp_path, tenant_token=98765432109)
    result = run_target(config, "not read\n", tmp_path, env=DEBUG)
    assert result.returncode != 0
    assert "tenant_token" in result.stderr
    assert "98765432109" not in result.stderr


@pytest.mark.parametrize("about_format", [None, "markdown", "json"])
def test_about_never_shows_the_token(tmp_path, about_format):
    config_path = write_config(tmp_path, base_config(tmp_path, tenant_token=TOKEN))
    args = [TARGET_BIN, "--about", "--config", str(config_path)]
    if about_format:
        args.append(f"--format={about_format}")
    completed = subprocess.run(
        args, capture_output=True, timeout=60, cwd=tmp_path, env={**_environ(), **DEBUG}
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert b"tenant_token" in completed.stdout, "the setting is documented"
    assert SECRET not in completed.stdout and SECRET not in completed.stderr


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_debug_log_grows_linearly_with_the_input(tmp_path):
    """DEBUG is what a user turns on to look for a leak: it must stay usable."""
    result = run_debug(tmp_path, singer_lines([event(n) for n in range(1000)]), dry_run=True)
    assert result.returncode == 0
    assert len(result.stderr) < 2_000_000, f"{len(result.stderr):,} bytes of DEBUG log"
