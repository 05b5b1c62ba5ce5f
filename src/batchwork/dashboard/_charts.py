"""Charts as geometry: pure functions from timeline points to SVG coordinates.

The templates draw the shapes; nothing here knows HTML. Server-side SVG needs no
JavaScript library and no build step, and it is escaped like any other value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class Point(Protocol):
    """One timeline bucket, as :meth:`JobProcessor.timeline` returns it."""

    @property
    def at(self) -> datetime: ...
    @property
    def finished(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def mean_pickup(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """One filled time bucket of a chart."""

    at: datetime
    finished: int
    failed: int
    mean_pickup: float | None


@dataclass(frozen=True, slots=True)
class Bar:
    """One stacked bar: finished at the bottom, failed on top."""

    x: float
    width: float
    ok_y: float
    ok_height: float
    fail_y: float
    fail_height: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """A throughput chart ready to draw: bars, axis ticks and a pickup-latency line."""

    width: int
    height: int
    left: int
    bottom: int
    bars: tuple[Bar, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    latency_points: str
    latency_max: float
    total_finished: int
    total_failed: int
    mean_pickup: float | None


def fill_buckets(
    points: Sequence[Point], *, since: datetime, until: datetime, bucket: float
) -> list[Bucket]:
    """Every bucket from ``since`` to ``until``, zero where the timeline has no point.

    Example::

        fill_buckets([], since=t0, until=t0 + timedelta(seconds=30), bucket=10)  # 3 zeros
    """
    count = max(1, int((until - since).total_seconds() // bucket) + 1)
    finished = [0] * count
    failed = [0] * count
    pickup_sum = [0.0] * count
    pickup_n = [0] * count
    for p in points:
        index = int((p.at - since).total_seconds() // bucket)
        if not 0 <= index < count:
            continue
        finished[index] += p.finished
        failed[index] += p.failed
        if p.mean_pickup is not None:
            weight = max(1, p.finished + p.failed)
            pickup_sum[index] += p.mean_pickup * weight
            pickup_n[index] += weight
    return [
        Bucket(
            at=since + timedelta(seconds=i * bucket),
            finished=finished[i],
            failed=failed[i],
            mean_pickup=pickup_sum[i] / pickup_n[i] if pickup_n[i] else None,
        )
        for i in range(count)
    ]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 < value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def throughput_chart(
    buckets: Sequence[Bucket],
    *,
    bucket: float,
    width: int = 760,
    height: int = 200,
    left: int = 44,
    bottom: int = 22,
) -> Chart:
    """Lay out stacked bars (finished, failed) per bucket and the pickup-latency line.

    Example::

        chart = throughput_chart(fill_buckets(points, since=a, until=b, bucket=10), bucket=10)
    """
    plot_w = width - left - 28  # room for the last time label
    plot_h = height - bottom - 8
    top = max((b.finished + b.failed for b in buckets), default=0)
    y_max = nice_ceiling(top)
    slot = plot_w / max(1, len(buckets))
    bars = []
    for i, b in enumerate(buckets):
        ok_h = plot_h * b.finished / y_max
        fail_h = plot_h * b.failed / y_max
        base = 8 + plot_h
        bars.append(
            Bar(
                x=round(left + i * slot + slot * 0.1, 2),
                width=round(max(1.0, slot * 0.8), 2),
                ok_y=round(base - ok_h, 2),
                ok_height=round(ok_h, 2),
                fail_y=round(base - ok_h - fail_h, 2),
                fail_height=round(fail_h, 2),
                title=f"{b.at:%H:%M:%S} UTC: {b.finished} finished, {b.failed} failed"
                + (f", pickup {b.mean_pickup:.3f}s" if b.mean_pickup is not None else ""),
            )
        )
    y_ticks = tuple((round(8 + plot_h - plot_h * f, 2), _number(y_max * f)) for f in (0, 0.5, 1.0))
    every = max(1, len(buckets) // 6)
    x_ticks = tuple(
        (
            round(left + i * slot + slot / 2, 2),
            f"{b.at:%H:%M:%S}" if bucket < 60 else f"{b.at:%H:%M}",
        )
        for i, b in enumerate(buckets)
        if i % every == 0
    )
    latencies = [b.mean_pickup for b in buckets if b.mean_pickup is not None]
    lat_max = nice_ceiling(max(latencies, default=0.0))
    line = " ".join(
        f"{left + i * slot + slot / 2:.1f},{8 + plot_h - plot_h * b.mean_pickup / lat_max:.1f}"
        for i, b in enumerate(buckets)
        if b.mean_pickup is not None
    )
    weights = [(b.mean_pickup, b.finished + b.failed) for b in buckets if b.mean_pickup is not None]
    total_w = sum(max(1, w) for _, w in weights)
    mean_pickup = sum(v * max(1, w) for v, w in weights) / total_w if weights else None
    return Chart(
        width=width,
        height=height,
        left=left,
        bottom=bottom,
        bars=tuple(bars),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        latency_points=line,
        latency_max=lat_max,
        total_finished=sum(b.finished for b in buckets),
        total_failed=sum(b.failed for b in buckets),
        mean_pickup=mean_pickup,
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
