"""checkpoints.Checkpoints driven directly: which STATE may be written, in every order the run
can report things (a full batch, a split batch, a signal, a failure, a schema change).

tests/e2e/test_checkpoints.py checks the same guarantee through the real CLI.
"""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from target_planhat.checkpoints import IN_FLIGHT, Checkpoint, Checkpoints

BATCH = ("batch", "events", 1)
OTHER = ("batch", "events", 2)  # the sink that replaced BATCH after a schema change


def state(n: int) -> dict:
    return {"bookmarks": {"events": {"n": n}}}


def write(checkpoints: Checkpoints) -> dict | None:
    """What the target does: ask, write, say it was written."""
    checkpoint = checkpoints.writable()
    if checkpoint is None:
        return None
    checkpoints.written(checkpoint)
    return checkpoint.state


def test_nothing_held_a_state_is_writable_at_once() -> None:
    checkpoints = Checkpoints()
    assert write(checkpoints) is None
    checkpoints.state_arrived(0, state(0))
    assert write(checkpoints) == state(0)
    assert write(checkpoints) is None  # written once


def test_a_state_waits_for_the_batch_being_built_then_for_it_in_flight() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(3, state(3))
    assert write(checkpoints) is None
    checkpoints.handed_over(BATCH)
    assert write(checkpoints) is None  # in flight is not acknowledged
    checkpoints.acknowledged(IN_FLIGHT)
    assert write(checkpoints) == state(3)


def test_a_state_before_the_batch_is_writable_while_the_batch_waits() -> None:
    checkpoints = Checkpoints()
    checkpoints.state_arrived(2, state(2))  # records 1-2 were filtered: nothing holds them
    checkpoints.holding(BATCH, 3)
    checkpoints.state_arrived(5, state(5))
    assert write(checkpoints) == state(2)
    assert write(checkpoints) is None


def test_a_state_at_the_first_held_position_waits() -> None:
    """Position N is the N-th record: a STATE read after it must wait for it."""
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 4)
    checkpoints.state_arrived(3, state(3))
    checkpoints.state_arrived(4, state(4))
    assert write(checkpoints) == state(3)
    checkpoints.acknowledged(BATCH)
    assert write(checkpoints) == state(4)


def test_a_split_batch_advances_chunk_by_chunk() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    for n in (10, 20, 30):
        checkpoints.state_arrived(n, state(n))
    checkpoints.handed_over(BATCH)
    checkpoints.acknowledged(IN_FLIGHT, 11)  # chunk 1-10 acknowledged, next chunk from 11
    assert write(checkpoints) == state(10)
    checkpoints.acknowledged(IN_FLIGHT, 25)
    assert write(checkpoints) == state(20)
    checkpoints.acknowledged(IN_FLIGHT, None)
    assert write(checkpoints) == state(30)


def test_the_newest_covered_state_is_written_and_the_older_ones_forgotten() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    for n in (1, 2, 3):
        checkpoints.state_arrived(n, state(n))
    checkpoints.acknowledged(BATCH)
    assert write(checkpoints) == state(3)
    assert write(checkpoints) is None


def test_a_failed_batch_stops_state_where_it_failed() -> None:
    """The sender never reports a failed chunk: the STATE after it is never writable."""
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(5, state(5))
    checkpoints.state_arrived(15, state(15))
    checkpoints.handed_over(BATCH)
    checkpoints.acknowledged(IN_FLIGHT, 8)  # first chunk acknowledged, the second one fails
    assert write(checkpoints) == state(5)
    checkpoints.holding(OTHER, 16)  # the run goes on reading until the failure is raised
    checkpoints.state_arrived(20, state(20))
    assert write(checkpoints) is None
    assert checkpoints.first_unacknowledged() == 8


def test_a_signal_between_hand_over_and_the_sdk_taking_the_batch() -> None:
    """handed_over holds IN_FLIGHT before it lets go of the batch: at no point in between does
    the batch look acknowledged, whatever step a signal interrupts after."""
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(4, state(4))
    checkpoints.handed_over(BATCH)
    # The signal lands here: submit() never runs, the sender never reports.
    assert write(checkpoints) is None
    assert checkpoints.first_unacknowledged() == 1


def test_a_signal_mid_batch_writes_the_state_the_acknowledged_chunks_cover() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(3, state(3))
    checkpoints.state_arrived(6, state(6))
    checkpoints.handed_over(BATCH)
    checkpoints.holding(OTHER, 7)  # the next batch builds meanwhile
    checkpoints.state_arrived(9, state(9))
    checkpoints.acknowledged(IN_FLIGHT, 5)  # the sender stopped after its first chunk
    assert write(checkpoints) == state(3)


def test_a_schema_change_keeps_the_replaced_sinks_batch_held() -> None:
    """A sink replaced by a SCHEMA leaves the target's list of active sinks but its batch, and
    the batch in flight, still hold STATE until acknowledged."""
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(2, state(2))
    checkpoints.holding(OTHER, 3)  # records under the new schema, a new sink
    checkpoints.state_arrived(4, state(4))
    assert write(checkpoints) is None
    checkpoints.handed_over(BATCH)  # drain_all(): the replaced sink first
    checkpoints.acknowledged(IN_FLIGHT)
    assert write(checkpoints) == state(2)
    checkpoints.handed_over(OTHER)
    assert write(checkpoints) is None
    checkpoints.acknowledged(IN_FLIGHT)
    assert write(checkpoints) == state(4)


def test_two_states_without_a_record_between_keep_the_older_age() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1, now=50.0)
    checkpoints.state_arrived(1, state(1), now=100.0)
    checkpoints.state_arrived(1, state(2), now=200.0)
    assert checkpoints.waiting_since() == 50.0
    checkpoints.handed_over(BATCH)  # in flight: a drain cannot hurry it
    assert checkpoints.waiting_since() == 100.0
    checkpoints.acknowledged(IN_FLIGHT)
    assert write(checkpoints) == state(2)  # the newer STATE, once
    assert write(checkpoints) is None
    assert checkpoints.waiting_since() is None


def test_holding_again_keeps_the_first_position() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 3, now=1.0)
    checkpoints.holding(BATCH, 7, now=2.0)
    assert checkpoints.first_unacknowledged() == 3
    assert checkpoints.waiting_since() == 1.0


def test_acknowledgement_never_moves_back() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(IN_FLIGHT, 1)
    checkpoints.acknowledged(IN_FLIGHT, 10)
    checkpoints.acknowledged(IN_FLIGHT, 5)
    assert checkpoints.first_unacknowledged() == 10


def test_an_unknown_holder_acknowledging_changes_nothing() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 2)
    checkpoints.acknowledged(OTHER, 10)
    checkpoints.acknowledged(OTHER)
    checkpoints.handed_over(OTHER)
    assert checkpoints.first_unacknowledged() == 2


def test_a_second_channel_holds_state_until_it_acknowledges_too() -> None:
    """Acknowledgement is per input position: a record that is both an activity and, say, a
    metric point is acknowledged when both channels have acknowledged it."""
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.holding("metric points", 2)
    checkpoints.state_arrived(3, state(3))
    checkpoints.handed_over(BATCH)
    checkpoints.acknowledged(IN_FLIGHT)
    assert write(checkpoints) is None
    checkpoints.acknowledged("metric points")
    assert write(checkpoints) == state(3)


def test_an_unchanged_state_is_not_written_again() -> None:
    checkpoints = Checkpoints()
    checkpoints.state_arrived(0, state(1))
    assert write(checkpoints) == state(1)
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(1, state(1))
    checkpoints.acknowledged(BATCH)
    assert write(checkpoints) is None


def test_the_state_is_copied_on_arrival() -> None:
    checkpoints = Checkpoints()
    value = state(1)
    checkpoints.state_arrived(0, value)
    value["bookmarks"]["events"]["n"] = 99  # the SDK's own dict changes later
    assert write(checkpoints) == state(1)


def test_written_after_the_write_so_a_signal_in_between_loses_nothing() -> None:
    """A signal after ``writable()`` but before ``written()``: the STATE is asked for again."""
    checkpoints = Checkpoints()
    checkpoints.state_arrived(0, state(1))
    first = checkpoints.writable()
    assert first is not None
    again = checkpoints.writable()  # nothing was marked written
    assert again == first


def test_news_says_when_asking_can_give_a_new_answer() -> None:
    checkpoints = Checkpoints()
    assert not checkpoints.news
    checkpoints.holding(BATCH, 1)
    assert not checkpoints.news  # no STATE waits
    checkpoints.state_arrived(1, state(1))
    assert checkpoints.news
    assert write(checkpoints) is None
    assert not checkpoints.news
    checkpoints.acknowledged(BATCH)  # from the sender thread, as the batch is acknowledged
    assert checkpoints.news
    assert write(checkpoints) == state(1)
    assert not checkpoints.news


def test_acknowledgements_from_another_thread() -> None:
    checkpoints = Checkpoints()
    checkpoints.holding(BATCH, 1)
    checkpoints.state_arrived(1000, state(1000))
    checkpoints.handed_over(BATCH)

    def sender() -> None:
        for up_to in range(2, 1002):
            checkpoints.acknowledged(IN_FLIGHT, up_to)
        checkpoints.acknowledged(IN_FLIGHT)

    thread = threading.Thread(target=sender)
    thread.start()
    seen = []
    while thread.is_alive():
        checkpoints.holding(("batch", "x", 0), 2000)
        checkpoints.handed_over(("batch", "x", 0), "elsewhere")
        written = write(checkpoints)
        if written is not None:
            seen.append(written)
    thread.join()
    seen.append(write(checkpoints))
    assert [s for s in seen if s is not None] == [state(1000)]


# --- against the plain rule ------------------------------------------------------------------

Event = tuple  # ("record", holder) | ("state",) | ("hand_over", holder) | ("ack", up_to)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("record"), st.sampled_from([BATCH, OTHER])),
            st.tuples(st.just("state")),
            st.tuples(st.just("hand_over"), st.sampled_from([BATCH, OTHER])),
            st.tuples(st.just("ack"), st.integers(0, 3)),
            st.tuples(st.just("write")),
        ),
        max_size=60,
    )
)
def test_never_a_state_past_an_unacknowledged_record(events: list[Event]) -> None:
    """The plain rule, kept per record: each record is unacknowledged until the chunk holding
    it is; a written STATE must have every record before it acknowledged, and the newest such
    STATE is the one written."""
    checkpoints = Checkpoints()
    position = 0
    building: dict[tuple, list[int]] = {BATCH: [], OTHER: []}
    in_flight: list[int] = []
    unacked: set[int] = set()
    states: list[tuple[int, dict]] = []
    last_written: dict | None = None
    for event in events:
        kind = event[0]
        if kind == "record":
            position += 1
            building[event[1]].append(position)
            unacked.add(position)
            checkpoints.holding(event[1], position)
        elif kind == "state":
            value = state(len(states))
            states.append((position, value))
            checkpoints.state_arrived(position, value)
        elif kind == "hand_over":
            if in_flight:  # the sink waits for the batch in flight first
                continue
            in_flight = building[event[1]]
            building[event[1]] = []
            checkpoints.handed_over(event[1])
        elif kind == "ack":
            count = min(event[1], len(in_flight))
            done, in_flight = in_flight[:count], in_flight[count:]
            unacked.difference_update(done)
            checkpoints.acknowledged(IN_FLIGHT, in_flight[0] if in_flight else None)
        else:
            limit = min(unacked, default=position + 1)
            allowed = [(at, value) for at, value in states if at < limit]
            expected = None
            if allowed:
                at, value = allowed[-1]
                states = [(later, v) for later, v in states if later > at]
                if value != last_written:
                    expected = value
            checkpoint = checkpoints.writable()
            got = checkpoint.state if checkpoint is not None else None
            assert got == expected
            if checkpoint is not None:
                assert isinstance(checkpoint, Checkpoint)
                checkpoints.written(checkpoint)
                last_written = checkpoint.state
