"""Settings seen in a run of the real CLI: which fields are read (so which shape problems count),
when the dead-letter file is created, and the README's recipe for anonymous events."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import base_config, event, run_target, singer_lines


def test_shape_problems_are_counted_for_fields_the_target_reads(tmp_path: Path) -> None:
    """An unparsable time nobody reads is not a problem; one the mapping reads is."""
    records = [
        event(1, processed_time="not a time", data="{not a bag"),
        event(2, event_time="not a time"),
    ]
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["shape_problems"] == {"unparsed_time_event_time": 1}
    assert result.report["rejected_by"] == {"bad_date": 1}
    assert result.report["dry_run_written"] == 1


def test_a_run_without_rejects_leaves_no_empty_dead_letter_file(tmp_path: Path) -> None:
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines([event(1)]), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "dry-run.jsonl").exists()
    assert not (tmp_path / "rejected.jsonl").exists()


def test_a_run_with_a_reject_writes_the_dead_letter_file(tmp_path: Path) -> None:
    records = [event(1), event(2, user=None)]
    result = run_target(base_config(tmp_path, dry_run=True), singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "rejected.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"reason":"no_identifier"' in lines[0]


def test_the_readme_recipe_counts_anonymous_events_instead_of_dead_lettering_them(
    tmp_path: Path,
) -> None:
    recipe = {"*": {"where": [{"path": "$.user_id", "op": "exists"}]}}
    records = [event(1), event(2, user=None)]
    config = base_config(tmp_path, dry_run=True, event_filters=recipe)
    result = run_target(config, singer_lines(records), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["filtered_by"] == {"*: where $.user_id exists": 1}
    assert result.report["rejected"] == 0
    assert result.report["dry_run_written"] == 1
    assert not (tmp_path / "rejected.jsonl").exists()
