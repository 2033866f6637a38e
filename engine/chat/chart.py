"""Render a MoodReport as a PNG bar chart."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from engine.types import MoodReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 100
POSITIVE_COLOR, NEUTRAL_COLOR, NEGATIVE_COLOR = "#4caf50", "#bdbdbd", "#e57373"
MAX_TICKS = 10


def render_mood_chart(report: MoodReport) -> bytes:
    """Stacked per-day bars of negative, neutral and positive counts, 800x400 PNG.

    Labels are ASCII only: the bundled DejaVu Sans has no CJK glyphs.
    """
    # Imported here because matplotlib takes about a second to import and most bot
    # processes never draw a chart. Figure + the Agg canvas avoid pyplot's global state,
    # so this is safe to call from a worker thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    draw_mood_chart(fig.add_subplot(), report)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def draw_mood_chart(ax: Axes, report: MoodReport) -> None:
    """Draw the chart on `ax`: the PNG above, and the PDF report (engine/chat/report_pdf.py)."""
    from matplotlib.ticker import MaxNLocator

    xs = list(range(len(report.series)))
    positive = [point.positive for point in report.series]
    neutral = [point.neutral for point in report.series]
    negative = [point.negative for point in report.series]
    below_positive = [n + m for n, m in zip(negative, neutral, strict=True)]
    ax.bar(xs, negative, color=NEGATIVE_COLOR, label="negative")
    if report.neutral:
        ax.bar(xs, neutral, bottom=negative, color=NEUTRAL_COLOR, label="neutral")
    ax.bar(xs, positive, bottom=below_positive, color=POSITIVE_COLOR, label="positive")

    step = max(1, -(-len(xs) // MAX_TICKS))  # ceil, so long periods do not overlap labels
    ticks = xs[::step]
    ax.set_xticks(ticks, [report.series[i].day.strftime("%m-%d") for i in ticks])
    ax.set_xlim(-0.6, max(len(xs), 1) - 0.4)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("messages")
    period = "today" if report.days == 1 else f"last {report.days} days"
    ax.set_title(f"Mood, {period}")

    if report.total:
        counts = {
            "positive": report.positive,
            "neutral": report.neutral,
            "negative": report.negative,
        }
        parts = [
            f"{count} {tone} ({round(count * 100 / report.total)}%)"
            for tone, count in counts.items()
            if count or tone != "neutral"
        ]
        summary = f"{report.total} messages: " + ", ".join(parts)
        ax.text(0.01, 0.97, summary, transform=ax.transAxes, va="top", fontsize=9)
        tallest = max(p + b for p, b in zip(positive, below_positive, strict=True))
        ax.set_ylim(0, tallest * 1.3)  # headroom so the summary and legend clear the bars
        handles, labels = ax.get_legend_handles_labels()
        # Reversed so the legend stacks like the bars: positive on top.
        ax.legend(handles[::-1], labels[::-1], loc="upper right", fontsize=9)
    else:
        ax.set_ylim(0, 1)
        ax.text(
            0.5,
            0.5,
            "No mood data yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=14,
            color="grey",
        )
