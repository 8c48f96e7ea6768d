"""The sender thread: one delivery at a time, in order, failures handed to the main thread."""

from __future__ import annotations

import threading
import time

import pytest

from target_planhat.planhat import PlanhatError
from target_planhat.sender import Sender


def test_one_job_at_a_time_in_order() -> None:
    sender = Sender()
    running = 0
    most = 0
    order: list[int] = []
    lock = threading.Lock()

    def job(n: int):
        def run() -> None:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            order.append(n)
            with lock:
                running -= 1

        return run

    for n in range(5):
        sender.submit(job(n))
        assert sender.busy or order  # submit returns while the job runs
    sender.wait()
    sender.close()
    assert order == [0, 1, 2, 3, 4]
    assert most == 1


def test_submit_returns_while_the_job_runs() -> None:
    sender = Sender()
    release = threading.Event()
    sender.submit(release.wait)
    assert sender.busy
    assert not sender.wait_idle(timeout=0.05)
    release.set()
    sender.wait()
    assert not sender.busy


def test_failure_is_raised_once_in_the_waiting_thread() -> None:
    sender = Sender()

    def fail() -> None:
        raise PlanhatError("Planhat refused a batch")

    sender.submit(fail)
    with pytest.raises(PlanhatError, match="refused"):
        sender.wait()
    sender.wait()  # raised once
    sender.submit(fail)
    sender.wait_idle()
    with pytest.raises(PlanhatError):
        sender.submit(lambda: None)  # the next batch is not sent after a failure


def test_wait_polls_check() -> None:
    class Stop(Exception):
        pass

    stop = threading.Event()

    def check() -> None:
        if stop.is_set():
            raise Stop

    sender = Sender(check=check)
    release = threading.Event()
    sender.submit(release.wait)
    threading.Timer(0.05, stop.set).start()
    with pytest.raises(Stop):
        sender.wait()
    # It stopped on the check, not because the job ended: the job is still blocked.
    assert not release.is_set() and sender.busy
    release.set()
    sender.wait_idle()
