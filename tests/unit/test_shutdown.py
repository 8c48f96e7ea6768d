"""``shutdown.ShutdownGuard``: when a signal stops the run at once, when at the next ``check()``,
and what it never interrupts (an acknowledgement being recorded)."""

from __future__ import annotations

import signal

import pytest

from target_planhat.shutdown import ShutdownGuard, StopRequested

# --- the guard itself (from tests/e2e/test_signals.py) --------------------------------------


def test_guard_first_signal_in_request_is_deferred_second_raises() -> None:
    guard = ShutdownGuard()
    with guard.request():
        guard.on_signal(signal.SIGTERM)  # deferred
        assert guard.stopping
        with pytest.raises(StopRequested) as info:
            guard.on_signal(signal.SIGTERM)
    assert info.value.exit_code == 143


def test_guard_never_interrupts_a_critical_step() -> None:
    guard = ShutdownGuard()
    with guard.critical():
        guard.on_signal(signal.SIGINT)
        guard.on_signal(signal.SIGINT)  # even a second one waits
        guard.check()  # no stop inside
    # Acted on at the next check, so the bookkeeping around the step completes first.
    with pytest.raises(StopRequested) as info:
        guard.check()
    assert info.value.exit_code == 130


def test_guard_protects_an_answer_until_it_is_recorded() -> None:
    """A first signal between a 2xx answer and the ledger commit must not drop the answer."""
    guard = ShutdownGuard()
    with guard.request():
        pass  # the POST came back
    guard.on_signal(signal.SIGTERM)  # lands before runtime.deliver enters critical()
    recorded = []
    with guard.critical():
        recorded.append("ledger")
    assert recorded == ["ledger"]
    with pytest.raises(StopRequested):
        guard.check()


def test_guard_second_signal_after_an_answer_still_stops() -> None:
    guard = ShutdownGuard()
    with guard.request():
        pass
    guard.on_signal(signal.SIGTERM)
    with pytest.raises(StopRequested):
        guard.on_signal(signal.SIGTERM)


def test_guard_non_2xx_answer_is_not_protected() -> None:
    guard = ShutdownGuard()
    with guard.request():
        pass
    guard.release()  # a 503: the client waits to retry, a signal must stop that wait at once
    with pytest.raises(StopRequested):
        guard.on_signal(signal.SIGTERM)


def test_guard_outside_any_step_stops_at_once() -> None:
    guard = ShutdownGuard()
    with pytest.raises(StopRequested) as info:
        guard.on_signal(signal.SIGINT)
    assert info.value.exit_code == 130
