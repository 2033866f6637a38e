"""Render a MoodReport as a PNG bar chart."""

from __future__ import annotations

import io

from core.types import MoodReport

WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 100
POSITIVE_COLOR, NEGATIVE_COLOR = "#4caf50", "#e57373"
MAX_TICKS = 10


def render_mood_chart(report: MoodReport) -> bytes:
    """Stacked per-day bars of positive/negative counts, 800x400 PNG.

    Labels are ASCII only: the bundled DejaVu Sans has no CJK glyphs.
    """
    # Imported here because matplotlib takes about a second to import and most bot
    # processes never draw a chart. Figure + the Agg canvas avoid pyplot's global state,
    # so this is safe to call from a worker thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(report.series)))
    positive = [point.positive for point in report.series]
    negative = [point.negative for point in report.series]
    ax.bar(xs, negative, color=NEGATIVE_COLOR, label="negative")
    ax.bar(xs, positive, bottom=negative, color=POSITIVE_COLOR, label="positive")

    step = max(1, -(-len(xs) // MAX_TICKS))  # ceil, so long periods do not overlap labels
    ticks = xs[::step]
    ax.set_xticks(ticks, [report.series[i].day.strftime("%m-%d") for i in ticks])
    ax.set_xlim(-0.6, max(len(xs), 1) - 0.4)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("messages")
    period = "today" if report.days == 1 else f"last {report.days} days"
    ax.set_title(f"Mood, {period}")

    if report.total:
        share = round((report.positive_share or 0.0) * 100)
        summary = f"{report.total} messages: {report.positive} positive ({share}%), "
        summary += f"{report.negative} negative ({100 - share}%)"
        ax.text(0.01, 0.97, summary, transform=ax.transAxes, va="top", fontsize=9)
        tallest = max(p + n for p, n in zip(positive, negative, strict=True))
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

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
