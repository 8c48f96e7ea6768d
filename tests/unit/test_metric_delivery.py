"""A batch's observations -> points: each event once per rule, distinct totals per day (LAST),
refused rows dead-lettered. With the in-memory counts of a dry run; real HTTP and both stores are
in tests/e2e/test_metrics.py and tests/unit/test_metric_counts.py."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from target_planhat.metric_delivery import MemoryCounts, MetricDelivery, Seen, _answer_errors
from target_planhat.metrics import MetricRules, Observation
from target_planhat.rejects import DeadLetterFile
from target_planhat.report import DeliveryReport
from target_planhat.shutdown import ShutdownGuard

RULES = MetricRules(
    [
        {"dimensionId": "logins", "externalId": "$.c"},
        {
            "dimensionId": "users",
            "externalId": "$.c",
            "aggregate": "count_distinct",
            "value": "$.u",
        },
    ]
)


def seen(rule: int, event: str, day: str, company: str, amount: object = 1) -> Seen:
    return Seen(Observation(rule, day, company, amount), event, 0)  # type: ignore[arg-type]


class Written:
    def __init__(self) -> None:
        self.lines: list[dict] = []

    def __call__(self, bodies) -> None:
        self.lines.extend(orjson.loads(body) for body in bodies)


def delivery(tmp_path: Path, write: Written, max_bytes: int = 8_000_000) -> MetricDelivery:
    return MetricDelivery(
        RULES,
        MemoryCounts(),
        DeliveryReport(),
        DeadLetterFile(tmp_path / "dead.jsonl"),
        ShutdownGuard(),
        max_bytes,
        write_dry_run=write,
    )


def point(dimension: str, value: int, company: str, day: str) -> dict:
    return {
        "dimensiondata": {
            "dimensionId": dimension,
            "value": value,
            "externalId": company,
            "model": "Company",
            "date": f"{day}T00:00:00.000Z",
        }
    }


def test_two_batches_each_event_once_and_distinct_totals(tmp_path: Path) -> None:
    write = Written()
    metrics = delivery(tmp_path, write)
    metrics.deliver(
        [
            seen(0, "e1", "2024-01-01", "acme"),
            seen(1, "e1", "2024-01-01", "acme", "ann"),
            seen(0, "e2", "2024-01-01", "acme"),
            seen(1, "e2", "2024-01-01", "acme", "bob"),
            seen(0, "e2", "2024-01-01", "acme"),  # the same event twice in a batch
        ]
    )
    metrics.deliver(
        [
            seen(0, "e1", "2024-01-01", "acme"),  # replayed
            seen(1, "e1", "2024-01-01", "acme", "ann"),
            seen(0, "e3", "2024-01-01", "acme"),
            seen(1, "e3", "2024-01-01", "acme", "cid"),
            seen(0, "e4", "2024-01-02", "acme"),
            seen(1, "e4", "2024-01-02", "acme", "ann"),
        ]
    )
    assert write.lines == [
        point("logins", 2, "acme", "2024-01-01"),
        point("users", 2, "acme", "2024-01-01"),
        point("logins", 1, "acme", "2024-01-01"),  # the increment (SUM)
        point("logins", 1, "acme", "2024-01-02"),
        point("users", 3, "acme", "2024-01-01"),  # the day's total (LAST)
        point("users", 1, "acme", "2024-01-02"),
    ]
    report = metrics._report
    assert report.metrics_dry_run_written == 6
    assert report.metrics_duplicates_skipped == 3


def test_points_split_to_fit_max_request_bytes(tmp_path: Path) -> None:
    write = Written()
    metrics = delivery(tmp_path, write, max_bytes=250)
    chunks: list[int] = []
    metrics._write_dry_run = lambda bodies: (chunks.append(len(bodies)), write(bodies))
    metrics.deliver([seen(0, f"e{i}", "2024-01-01", f"c{i}") for i in range(5)])
    assert chunks == [2, 2, 1]  # ~110 bytes a point
    assert [line["dimensiondata"]["externalId"] for line in write.lines] == [
        f"c{i}" for i in range(5)
    ]


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        (b'{"processed": 2, "errors": []}', []),
        (b'{"processed": true}', []),
        (b"", []),
        (b"not json", []),
        (
            b'{"processed": 1, "errors": [{"item": {"dimensionId": ""}, "error": "dimensionId '
            b'must be specified"}, "odd"]}',
            [({"dimensionId": ""}, "dimensionId must be specified"), ("odd", "refused by Planhat")],
        ),
    ],
)
def test_answer_errors(answer: bytes, errors: list) -> None:
    assert _answer_errors(answer) == errors
