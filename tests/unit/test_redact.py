"""``redact``: registered secrets never survive into a log record, its exception text, or text
and bytes passed through ``redact``/``redact_bytes``."""

from __future__ import annotations

import logging

import pytest

from target_planhat import redact

SECRET = "redact-test-SECRET-41c7"


@pytest.fixture(autouse=True)
def _registered() -> None:
    redact.register(SECRET)


def _formatted(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def test_text_and_bytes_are_masked() -> None:
    assert redact.redact(f"url /analytics/{SECRET}?x=1") == f"url /analytics/{redact.MASK}?x=1"
    assert redact.redact_bytes(f'{{"t":"{SECRET}"}}'.encode()) == b'{"t":"***"}'
    clean = b"nothing secret here"
    assert redact.redact_bytes(clean) is clean


def test_a_secret_containing_another_is_masked_whole() -> None:
    inner = "inner-SECRET-9a"
    outer = f"outer-{inner}-tail"
    redact.register(inner)
    redact.register(outer)
    assert redact.redact(f"a {outer} b {inner}") == "a *** b ***"


@pytest.mark.parametrize("not_a_secret", [None, "", "abc", True, ["x" * 10]])
def test_short_or_non_text_values_are_not_registered(not_a_secret: object) -> None:
    redact.register(not_a_secret)
    # "abc" would mask every "abc" in every message: too short to be a token.
    assert redact.redact("abc True None") == "abc True None"


def test_a_token_given_as_a_number_is_still_a_secret() -> None:
    redact.register(98765432109)
    assert "98765432109" not in redact.redact("tenant_token: 98765432109 is not a string")


def test_log_messages_and_their_arguments_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("urllib3.connectionpool")
    with caplog.at_level(logging.DEBUG):
        log.debug('"POST /analytics/%s HTTP/1.1" 200', SECRET)
        log.warning("plain %s", "text")
    text = _formatted(caplog)
    assert SECRET not in text and "/analytics/***" in text
    # A message without a secret keeps its args (structured formatters read them).
    plain = caplog.records[-1]
    assert plain.msg == "plain %s" and plain.args == ("text",)


def test_exception_text_is_masked_and_the_exception_object_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("target_planhat.test_redact")
    try:
        raise ValueError(f"connection to https://x/analytics/{SECRET} refused")
    except ValueError:
        with caplog.at_level(logging.DEBUG):
            log.exception("failed")
    record = caplog.records[-1]
    assert record.exc_text is not None and SECRET not in record.exc_text
    assert "ValueError: connection to https://x/analytics/***" in record.exc_text
    # A formatter that renders the exception object itself would print the secret.
    assert record.exc_info is None
    assert SECRET not in _formatted(caplog)


def test_a_broken_format_string_neither_breaks_logging_nor_leaks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("target_planhat.test_redact")
    with caplog.at_level(logging.DEBUG):
        log.warning(f"token {SECRET} %s %s", "only one argument")
    record = caplog.records[-1]
    assert record.args is None and SECRET not in record.getMessage()


def test_logger_names_from_the_input_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK names each sink's logger after its stream, which the input chooses."""
    with caplog.at_level(logging.DEBUG):
        logging.getLogger(f"stream-{SECRET}").info("draining")
    assert caplog.records[-1].name == "stream-***"


def test_stack_info_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("target_planhat.test_redact")
    with caplog.at_level(logging.DEBUG):
        # The stack text quotes this source line, secret and all: redact-test-SECRET-41c7
        log.warning("where", stack_info=True)  # redact-test-SECRET-41c7
    record = caplog.records[-1]
    assert record.stack_info and "where" in record.stack_info
    assert SECRET not in record.stack_info and redact.MASK in record.stack_info
