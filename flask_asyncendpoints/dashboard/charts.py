"""The throughput chart, laid out on the server: bars of completed and failed jobs as SVG shapes.

:func:`bar_chart` turns :class:`~flask_asyncendpoints.stores.monitoring.ThroughputPoint` buckets
into coordinates; the template draws them as inline SVG, so the chart needs no script and reads
the same with scripts off. Each bar carries a ``<title>`` (the browser's tooltip) with its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone

from ..stores.monitoring import ThroughputPoint

#: The chart's drawing area, in SVG user units (the SVG scales to the page's width).
WIDTH = 720
HEIGHT = 150
#: Room for the axis labels: left of the bars and below them.
LEFT = 36
BOTTOM = 20
TOP = 8


@dataclass(frozen=True)
class Bar:
    """One bucket: a failed segment stacked on a completed one."""

    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True)
class Tick:
    """A label on an axis, at ``position`` (x for the time axis, y for the count axis)."""

    position: float
    label: str


@dataclass(frozen=True)
class BarChart:
    """Everything the template draws, and the totals it states in words next to the chart."""

    width: int
    height: int
    left: int
    top: int
    bottom: float
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    completed: int
    failed: int
    peak: int


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10ⁿ that is at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always answers


def bar_chart(points: Sequence[ThroughputPoint], *, unit: str, label_every: int) -> BarChart:
    """Lay out ``points`` (oldest first) as a stacked bar chart.

    :param points: the buckets, oldest first.
    :param unit: ``"minute"`` or ``"hour"``: how the tooltips and the time axis name a bucket.
    :param label_every: write a time label under every this many bars.
    """
    peak = max((p.completed + p.failed for p in points), default=0)
    scale_top = _nice_ceiling(peak)
    plot_height = HEIGHT - TOP - BOTTOM
    plot_width = WIDTH - LEFT
    slot = plot_width / max(len(points), 1)
    gap = min(2.0, slot * 0.2)
    bottom = float(TOP + plot_height)
    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    time_format = "%H:%M"
    for index, point in enumerate(points):
        x = LEFT + index * slot
        completed_height = plot_height * point.completed / scale_top
        failed_height = plot_height * point.failed / scale_top
        start = point.start.astimezone(timezone.utc)
        when = start.strftime("%Y-%m-%d %H:%M UTC")
        bars.append(
            Bar(
                x=round(x + gap / 2, 2),
                width=round(max(slot - gap, 0.5), 2),
                completed_y=round(bottom - completed_height, 2),
                completed_height=round(completed_height, 2),
                failed_y=round(bottom - completed_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                title=f"{unit} from {when}: {point.completed} completed, {point.failed} failed",
            )
        )
        if index % label_every == 0:
            x_ticks.append(Tick(round(x + slot / 2, 2), start.strftime(time_format)))
    shares = (0.0, 0.5, 1.0) if scale_top % 2 == 0 else (0.0, 1.0)
    y_ticks = [Tick(round(bottom - plot_height * share, 2), f"{scale_top * share:g}") for share in shares]
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        bottom=bottom,
        bars=bars,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        completed=sum(p.completed for p in points),
        failed=sum(p.failed for p in points),
        peak=peak,
    )
