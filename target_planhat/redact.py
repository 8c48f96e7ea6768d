"""Keep the tenant token out of every log line, message and file.

The token sits in the URL path, and ``urllib3`` logs URLs at DEBUG, ``requests`` puts them in its
exception messages. Instead of hoping every call site is careful, every log record is redacted
when it is created, whichever library made it.
"""

from __future__ import annotations

import logging
import threading

MASK = "***"
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def register(secret: object) -> None:
    """Remember a secret (ignored when empty or too short to be one) and start redacting logs."""
    global _secrets
    if isinstance(secret, (int, float)) and not isinstance(secret, bool):
        # A token typed as a number in the config is refused by the config check, whose message
        # quotes the value: it is still the secret.
        secret = str(secret)
    if not isinstance(secret, str) or len(secret) < 4:
        return
    with _lock:
        if secret not in _secrets:
            # Longest first, so a secret containing another is masked whole.
            _secrets = tuple(sorted((*_secrets, secret), key=len, reverse=True))
    install()


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for UTF-8 bytes; returns ``data`` itself when it holds no secret."""
    for secret in _secrets:
        if secret.encode() in data:
            return redact(data.decode("utf-8", errors="replace")).encode()
    return data


def install() -> None:
    """Wrap the log-record factory once; records are redacted at creation, before any handler."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secrets:
            try:
                message = record.getMessage()
            except Exception:  # a broken format string must not break logging (or leak args)
                record.msg = redact(str(record.msg))
                record.args = None
            else:
                redacted = redact(message)
                if redacted != message:
                    record.msg = redacted
                    record.args = None
                # Otherwise msg and args stay: structured formatters read them (SDK metrics).
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = redact(text)
                if record.exc_text != text:
                    # Formatters that render the exception object themselves (the SDK's
                    # StructuredFormatter) would print the secret: they get the text only.
                    record.exc_info = None
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
            # The SDK names each sink's logger after its stream, which comes from the input.
            record.name = redact(record.name)
        return record

    logging.setLogRecordFactory(factory)
