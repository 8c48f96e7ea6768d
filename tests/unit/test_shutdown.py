"""``shutdown.ShutdownGuard``: when a signal stops the run at once, when at the next ``check()``,
and what it never interrupts (an acknowledgement being recorded)."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
import time

import pytest

from target_planhat.shutdown import ShutdownGuard, StopRequested

# --- the guard itself ------------------------------------------------------------------------


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


def test_a_critical_step_nests_and_ends_with_its_block_even_when_it_raises() -> None:
    guard = ShutdownGuard()
    with pytest.raises(ValueError), guard.critical():
        with guard.critical():
            pass
        guard.on_signal(signal.SIGTERM)  # the outer step is still critical: deferred
        raise ValueError("a failed commit")
    # No step is critical any more: the next signal stops at once.
    with pytest.raises(StopRequested):
        guard.on_signal(signal.SIGTERM)


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


class _SignallingStream(io.StringIO):
    """A log stream that delivers a real signal to this process in the middle of a write."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum

    def write(self, text: str) -> int:
        os.kill(os.getpid(), self.signum)  # the handler runs at the next bytecode, in here
        return super().write(text)


class _Handler(logging.StreamHandler):
    def __init__(self, stream: io.StringIO) -> None:
        super().__init__(stream)
        self.errors: list[BaseException | None] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.errors.append(sys.exc_info()[1])  # what logging would print as a traceback


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_landing_in_a_log_line_stops_at_the_next_check_not_inside_logging() -> None:
    """Raised inside logging's emit, the stop would end in ``handleError`` (a "--- Logging
    error ---" traceback on stderr) and be swallowed there."""
    guard = ShutdownGuard()
    handler = _Handler(_SignallingStream(signal.SIGUSR1))
    logger = logging.getLogger("test_shutdown.signal_in_a_log_line")
    logger.addHandler(handler)
    logger.propagate = False
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: guard.on_signal(signum, frame))
    try:
        logger.warning("a line the signal lands in")
    finally:
        signal.signal(signal.SIGUSR1, previous)
        logger.removeHandler(handler)
    assert handler.errors == []
    assert "a line the signal lands in" in handler.stream.getvalue()
    assert guard.stopping and guard.signals == 1
    with pytest.raises(StopRequested):
        guard.check()


class _SignallingLock:
    """A lock that delivers a real signal to this process right after it is taken, inside
    ``threading.Condition.__enter__`` (the handler runs at the next bytecode, in here)."""

    def __init__(self, signum: int) -> None:
        self.lock = threading.Lock()
        self.signum = signum

    def acquire(self, *args: object) -> bool:
        return self.lock.acquire(*args)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        taken = self.lock.acquire()
        os.kill(os.getpid(), self.signum)
        return taken

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_landing_as_a_condition_takes_its_lock_does_not_leak_the_lock() -> None:
    """Raised there, ``with condition:`` is never entered and its lock never released: the
    sender thread, or the next thread to take it, would wait forever."""
    guard = ShutdownGuard()
    lock = _SignallingLock(signal.SIGUSR1)
    condition = threading.Condition(lock)  # type: ignore[arg-type]  # duck-typed, as threading allows
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: guard.on_signal(signum, frame))
    try:
        with condition:
            entered = True
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert entered and not lock.lock.locked()
    assert guard.stopping and guard.signals == 1
    with pytest.raises(StopRequested):
        guard.check()


def _sleeping(guard: ShutdownGuard) -> tuple[threading.Thread, list[BaseException]]:
    """A thread in ``guard.sleep(600)`` (as the sender between retries), and what it raised."""
    stopped: list[BaseException] = []

    def wait() -> None:
        try:
            guard.sleep(600)
        except StopRequested as exc:
            stopped.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    return waiter, stopped


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_deferred_inside_threading_still_ends_a_sleep_in_another_thread() -> None:
    """The wake-up takes no lock: the handler may have interrupted code holding one."""
    guard = ShutdownGuard()
    waiter, stopped = _sleeping(guard)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: guard.on_signal(signum, frame))
    try:
        with threading.Condition(_SignallingLock(signal.SIGUSR1)):  # type: ignore[arg-type]
            pass
    finally:
        signal.signal(signal.SIGUSR1, previous)
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "a deferred signal must end the wait too"
    assert len(stopped) == 1 and stopped[0].exit_code == 128 + signal.SIGUSR1


def test_the_signal_handler_takes_no_lock() -> None:
    """The code a signal interrupts may hold any lock; taking one from the handler (an
    ``Event.set()`` to wake a sleeping thread did) could wait for it forever."""
    guard = ShutdownGuard()
    locks = (type(threading.Lock()), type(threading.RLock()))
    taken: list[str] = []

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "c_call" and isinstance(getattr(arg, "__self__", None), locks):
            taken.append(repr(arg))

    with guard.critical():  # every signal is deferred here: no raise to unwind
        sys.setprofile(profile)
        try:
            guard.on_signal(signal.SIGTERM)
            guard.on_signal(signal.SIGTERM)
        finally:
            sys.setprofile(None)
    assert taken == []
    assert guard.signals == 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_outside_logging_still_stops_at_once() -> None:
    guard = ShutdownGuard()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: guard.on_signal(signum, frame))
    try:
        with pytest.raises(StopRequested):
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                time.sleep(0)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_note_records_a_signal_without_acting_on_it() -> None:
    guard = ShutdownGuard()
    assert guard.note(signal.SIGINT) is True
    assert guard.note(signal.SIGTERM) is False
    assert guard.signum == signal.SIGINT and guard.signals == 2
    with pytest.raises(StopRequested):
        guard.check()


# --- StopRequested, check() and sleep() ---------------------------------------------------------


@pytest.mark.parametrize(("signum", "code", "name"), [(15, 143, "SIGTERM"), (2, 130, "SIGINT")])
def test_stop_requested_names_the_signal_and_exits_128_plus_it(signum, code, name) -> None:
    stop = StopRequested(signum)
    assert stop.exit_code == code and str(stop) == f"stopped by {name}"


def test_check_is_silent_until_a_signal_arrives() -> None:
    guard = ShutdownGuard()
    guard.check()
    assert not guard.stopping
    with guard.request():
        guard.on_signal(signal.SIGTERM)  # deferred
    with pytest.raises(StopRequested):
        guard.check()
    assert guard.signals == 1


def test_sleep_is_ended_by_a_signal_from_another_thread() -> None:
    """The sender thread waits between retries; the signal lands in the main thread."""
    guard = ShutdownGuard()
    waiter, stopped = _sleeping(guard)
    with guard.request():  # the main thread is mid-request: the first signal is deferred here
        guard.on_signal(signal.SIGTERM)
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "a signal must end the wait"
    assert len(stopped) == 1 and stopped[0].exit_code == 143


def test_steps_are_tracked_per_thread() -> None:
    """A critical step in the sender thread does not shield the main thread, which unwinds."""
    guard = ShutdownGuard()
    inside, leave = threading.Event(), threading.Event()

    def commit() -> None:
        with guard.critical():
            inside.set()
            leave.wait(60)

    sender = threading.Thread(target=commit)
    sender.start()
    inside.wait(60)
    try:
        with pytest.raises(StopRequested):
            guard.on_signal(signal.SIGTERM)  # main thread: in no step, so it stops at once
    finally:
        leave.set()
        sender.join(60)
