"""The delivery ledger through the CLI: dedupe across runs, pruning by ``ledger_ttl_days``,
``dedupe: false``, and the duplicates it skipped in the delivery report (stderr JSON line and
``report_path``)."""

from __future__ import annotations

import json
from pathlib import Path

from target_planhat.ledger import Ledger
from tests.support.cli import base_config, event, run_target, singer_lines
from tests.support.ledger import age
from tests.support.receiver import TOKEN, PlanhatReceiver


def _config(tmp_path: Path, planhat: PlanhatReceiver, **overrides: object) -> dict:
    settings = {"batch_size_rows": 10, **overrides}
    return base_config(tmp_path, tenant_token=TOKEN, api_url=planhat.url, **settings)


def _run(tmp_path: Path, config: dict, numbers, **kwargs):
    records = [event(n) for n in numbers]
    result = run_target(config, singer_lines(records, state_every=5, **kwargs), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_dedupe_across_runs_and_the_report(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat)
        first = _run(tmp_path, config, range(1, 31))
        again = _run(tmp_path, config, range(1, 31))  # the same input replayed whole
        overlap = _run(tmp_path, config, range(21, 51))  # an overlapping window, like a tap
    assert set(planhat.kept_counts().values()) == {1}
    assert set(planhat.kept_counts()) == set(range(1, 51))
    assert (first.report["sent"], first.report["duplicates_skipped"]) == (30, 0)
    assert (again.report["sent"], again.report["duplicates_skipped"]) == (0, 30)
    assert again.report["requests"] == 0
    assert (overlap.report["sent"], overlap.report["duplicates_skipped"]) == (20, 10)
    # The same report in report_path, and STATE still relayed for the skipped records.
    on_disk = json.loads(Path(config["report_path"]).read_text())
    assert on_disk == overlap.report
    assert again.states[-1] == {"bookmarks": {"events": {"n": 30}}}
    assert Ledger(config["ledger_path"], tenant_token=TOKEN).count() == 50


def test_dedupe_false_sends_again_and_keeps_no_ledger(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, dedupe=False)
        first = _run(tmp_path, config, range(1, 21))
        again = _run(tmp_path, config, range(1, 21))
    assert set(planhat.kept_counts().values()) == {2}
    assert again.report["sent"] == 20 and again.report["duplicates_skipped"] == 0
    assert first.report["duplicates_skipped"] == 0
    assert not Path(config["ledger_path"]).exists()


def test_ledger_ttl_days_prunes_so_old_ids_are_sent_again(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, ledger_ttl_days=7)
        _run(tmp_path, config, range(1, 21))
        ledger = Path(config["ledger_path"])
        age(
            ledger, [f"ins-{n:06d}" for n in range(1, 11)], days=8, token=TOKEN
        )  # older than the window
        again = _run(tmp_path, config, range(1, 21))
    assert again.report["ledger_pruned"] == 10
    assert (again.report["sent"], again.report["duplicates_skipped"]) == (10, 10)
    counts = planhat.kept_counts()
    assert all(counts[n] == 2 for n in range(1, 11))
    assert all(counts[n] == 1 for n in range(11, 21))


def test_duplicates_within_one_input_and_id_fallbacks(tmp_path: Path) -> None:
    """``$insert_id``, else ``uuid``, else a hash of the activity; repeats in one run skipped."""
    records = [event(1), event(1), event(2), event(2, **{"$insert_id": None})]
    no_ids = event(3, **{"$insert_id": None, "uuid": None})
    records += [no_ids, dict(no_ids)]  # the same activity twice: the same hash
    records += [event(4, **{"$insert_id": None, "uuid": None}, user="user-2")]
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, batch_size_rows=3)
        result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # event 2 again without $insert_id has another id (its uuid): it is sent.
    assert planhat.kept_counts() == {1: 1, 2: 2, 3: 1, 4: 1}
    assert result.report["duplicates_skipped"] == 2
    ledger = Ledger(config["ledger_path"], tenant_token=TOKEN)
    assert {"ins-000001", "ins-000002", "uuid-000002"} <= ledger.known(
        ["ins-000001", "ins-000002", "uuid-000002"]
    )
    assert ledger.count() == 5  # 3 ids + 2 hashes


def test_custom_dedupe_key(tmp_path: Path) -> None:
    records = [event(1), event(2, uuid="uuid-000001")]  # same uuid, different $insert_id
    with PlanhatReceiver() as planhat:
        config = _config(tmp_path, planhat, dedupe_key=["$.uuid"])
        result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0
    assert planhat.kept_counts() == {1: 1}
    assert result.report["duplicates_skipped"] == 1


def test_every_chunk_of_a_split_batch_is_recorded(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        # ~200 bytes per activity: a batch of 20 goes out in several POSTs.
        config = _config(
            tmp_path, planhat, batch_size_rows=20, max_request_bytes=1200, max_event_bytes=1000
        )
        result = _run(tmp_path, config, range(1, 41))
        again = _run(tmp_path, config, range(1, 41))
    assert len(planhat.requests()) > 4
    assert result.report["sent"] == 40
    assert again.report["duplicates_skipped"] == 40 and again.report["requests"] == 0
    assert set(planhat.kept_counts().values()) == {1}


def test_dry_run_leaves_the_ledger_alone(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        dry = base_config(tmp_path, dry_run=True)
        result = run_target(dry, singer_lines([event(n) for n in range(1, 11)]), tmp_path)
        assert result.returncode == 0
        live = _run(tmp_path, _config(tmp_path, planhat), range(1, 11))
    assert live.report["sent"] == 10 and live.report["duplicates_skipped"] == 0
    assert set(planhat.kept_counts()) == set(range(1, 11))
