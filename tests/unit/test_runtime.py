"""``runtime.Runtime``: ``deliver`` (dedupe against the ledger, chunks under
``max_request_bytes``, each chunk recorded before the next is sent, progress for STATE) and
``submit`` (the sender thread, reported to ``checkpoints``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.checkpoints import IN_FLIGHT
from target_planhat.planhat import PlanhatError
from target_planhat.runtime import Item, Runtime
from target_planhat.settings import compile_settings
from tests.support.cli import base_config
from tests.support.examples import examples
from tests.support.receiver import TOKEN, PlanhatReceiver, Reply


def _item(n: int, pad: int = 0) -> Item:
    activity = {"externalId": f"user-{n}", "action": "Login", "date": "2024-01-01T00:00:00Z"}
    if pad:
        activity["info"] = {"pad": "x" * pad}
    return (f"id-{n}", orjson.dumps(activity), "Login", n, activity["date"])


@pytest.fixture
def runtimes(tmp_path: Path):
    made: list[Runtime] = []

    def make(**config: object) -> Runtime:
        runtime = Runtime(compile_settings(base_config(tmp_path, **config)))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


def test_dry_run_writes_the_exact_bodies_and_reports_all_acknowledged(runtimes, tmp_path) -> None:
    runtime = runtimes(dry_run=True)
    steps: list[int | None] = []
    items = [_item(n) for n in (1, 2, 3)]
    runtime.deliver(items, steps.append)
    written = (tmp_path / "dry-run.jsonl").read_bytes().splitlines()
    assert written == [item[1] for item in items]
    assert steps == [None]
    assert runtime.report.dry_run_written == 3


def test_chunks_fit_max_request_bytes_and_progress_follows_each_one(runtimes) -> None:
    with PlanhatReceiver() as planhat:
        runtime = runtimes(
            tenant_token=TOKEN,
            api_url=planhat.url,
            max_request_bytes=1000,
            max_event_bytes=900,
        )
        items = [_item(n, pad=150) for n in range(1, 11)]
        steps: list[int | None] = []
        runtime.deliver(items, steps.append)
    bodies = [r.body for r in planhat.activity_requests()]
    assert len(bodies) > 1 and all(len(body) <= 1000 for body in bodies)
    # After each chunk: the position of the first activity not yet acknowledged.
    firsts = [r.activities[0]["externalId"] for r in planhat.activity_requests()[1:]]
    assert steps == [int(user.split("-")[1]) for user in firsts] + [None]
    assert runtime.report.sent == 10


def test_ids_already_in_the_ledger_or_repeated_are_not_sent_again(runtimes) -> None:
    with PlanhatReceiver() as planhat:
        runtime = runtimes(tenant_token=TOKEN, api_url=planhat.url)
        assert runtime.ledger is not None
        runtime.deliver([_item(1), _item(2)], lambda _: None)
        runtime.deliver([_item(2), _item(3), _item(3)], lambda _: None)
    sent = [a["externalId"] for r in planhat.activity_requests() for a in r.activities]
    assert sent == ["user-1", "user-2", "user-3"]
    assert runtime.report.duplicates_skipped == 2
    ids, dates = ["id-1", "id-2", "id-3"], ["2024-01-01T00:00:00Z"] * 3
    assert runtime.ledger.known(ids, dates) == set(ids)
    assert runtime.ledger.known(ids) == set(ids)  # without dates: found too, by a scan
    assert runtime.ledger.known(ids, ["2024-01-02T00:00:00Z"] * 3) == set()  # another day


def test_a_refused_chunk_is_not_recorded_and_progress_stops_before_it(runtimes) -> None:
    def second_refused(index: int, body: bytes) -> Reply:
        return Reply(status=422, body=b"no") if index == 1 else Reply()

    with PlanhatReceiver(second_refused) as planhat:
        runtime = runtimes(
            tenant_token=TOKEN, api_url=planhat.url, max_request_bytes=1000, max_event_bytes=900
        )
        items = [_item(n, pad=150) for n in range(1, 11)]
        steps: list[int | None] = []
        with pytest.raises(PlanhatError):
            runtime.deliver(items, steps.append)
    first_chunk = planhat.activity_requests()[0].activities
    assert runtime.ledger is not None
    recorded = runtime.ledger.known([item[0] for item in items])
    assert recorded == {f"id-{a['externalId'].split('-')[1]}" for a in first_chunk}
    assert len(steps) == 1 and steps[0] is not None  # only the first chunk acknowledged


def test_submit_delivers_in_the_sender_thread_and_tells_checkpoints(runtimes) -> None:
    runtime = runtimes(dry_run=True, dry_run_writes_state=True)
    checkpoints = runtime.checkpoints
    checkpoints.holding("batch", 1, 0.0)
    checkpoints.state_arrived(2, {"bookmarks": {"events": {"n": 2}}}, 0.0)
    assert checkpoints.writable() is None  # record 1 is not acknowledged yet
    checkpoints.handed_over("batch", IN_FLIGHT)
    runtime.submit([_item(1), _item(2)])
    runtime.sender.wait()
    writable = checkpoints.writable()
    assert writable is not None and writable.state == {"bookmarks": {"events": {"n": 2}}}
    assert runtime.report.dry_run_written == 2


def test_a_failed_submit_is_raised_at_the_next_wait_and_not_acknowledged(runtimes) -> None:
    def refused(index: int, body: bytes) -> Reply:
        return Reply(status=400, body=b"bad")

    with PlanhatReceiver(refused) as planhat:
        runtime = runtimes(tenant_token=TOKEN, api_url=planhat.url)
        checkpoints = runtime.checkpoints
        checkpoints.holding("batch", 1, 0.0)
        checkpoints.state_arrived(1, {"n": 1}, 0.0)
        checkpoints.handed_over("batch", IN_FLIGHT)
        runtime.submit([_item(1)])
        with pytest.raises(PlanhatError):
            runtime.sender.wait()
    assert checkpoints.writable() is None


def _plain_chunks(items: list[tuple], limit: int) -> list[list[tuple]]:
    """Chunks written plainly: items in order, a new chunk when the next would not fit."""
    chunks: list[list[tuple]] = []
    for item in items:
        body = b"[" + b",".join([*(i[1] for i in chunks[-1]), item[1]]) + b"]" if chunks else b""
        if not chunks or len(body) > limit:
            chunks.append([item])
        else:
            chunks[-1].append(item)
    return chunks


@settings(max_examples=examples(300), deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
    limit=st.integers(min_value=3, max_value=200),
)
def test_chunks_are_those_of_the_plain_split(sizes: list[int], limit: int) -> None:
    """The one-POST shortcut (the batch sized in C) and the split give what splitting item by
    item would: every body within ``max_request_bytes`` unless one item alone is larger."""
    items = [
        (f"id-{n}", b"x" * size, "a", n, "2026-11-30T00:00:00.000Z") for n, size in enumerate(sizes)
    ]
    owner = SimpleNamespace(settings=SimpleNamespace(max_request_bytes=limit))
    got = list(Runtime._chunks(owner, items))  # type: ignore[arg-type]
    assert got == _plain_chunks(items, limit)
