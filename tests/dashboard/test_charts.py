"""Chart geometry: pure functions from timeline points to SVG coordinates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batchwork.dashboard._charts import fill_buckets, nice_ceiling, throughput_chart
from batchwork.jobs._model import TimelinePoint

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_fill_buckets_places_points_and_fills_gaps_with_zeros() -> None:
    points = [
        TimelinePoint(T0 + timedelta(seconds=10), finished=3, failed=1, mean_pickup=0.2),
        TimelinePoint(T0 + timedelta(seconds=40), finished=1, failed=0, mean_pickup=None),
        TimelinePoint(T0 + timedelta(seconds=999), finished=9, failed=9, mean_pickup=1.0),
    ]
    buckets = fill_buckets(points, since=T0, until=T0 + timedelta(seconds=59), bucket=20)
    assert [(b.finished, b.failed) for b in buckets] == [(3, 1), (0, 0), (1, 0)]
    assert [b.at for b in buckets] == [T0 + timedelta(seconds=s) for s in (0, 20, 40)]
    assert [b.mean_pickup for b in buckets] == [0.2, None, None]


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (24, 25), (99, 100), (0.03, 0.05)],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_throughput_chart_stacks_failed_on_finished_within_the_plot() -> None:
    points = [
        TimelinePoint(T0, finished=6, failed=2, mean_pickup=0.5),
        TimelinePoint(T0 + timedelta(seconds=10), finished=2, failed=0, mean_pickup=0.1),
    ]
    buckets = fill_buckets(points, since=T0, until=T0 + timedelta(seconds=29), bucket=10)
    chart = throughput_chart(buckets, bucket=10, width=400, height=200)
    tall, short, empty = chart.bars
    assert tall.ok_y + tall.ok_height == pytest.approx(short.ok_y + short.ok_height)  # one baseline
    assert tall.fail_y + tall.fail_height == pytest.approx(tall.ok_y)  # failed sits on finished
    assert tall.ok_height == pytest.approx(3 * short.ok_height)
    assert empty.ok_height == empty.fail_height == 0
    assert min(b.fail_y for b in chart.bars) >= 0
    assert [label for _, label in chart.y_ticks] == ["0", "5", "10"]
    assert chart.total_finished == 8
    assert chart.total_failed == 2
    assert chart.mean_pickup == pytest.approx((0.5 * 8 + 0.1 * 2) / 10)
    assert len(chart.latency_points.split()) == 2
    assert "2 failed" in tall.title
