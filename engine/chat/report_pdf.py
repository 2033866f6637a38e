"""Draw a ReportData (engine/chat/report_data.py) as an A4 PDF with matplotlib's PDF backend.

Page one: the period, its counts and mood, the corrections, and /mood's chart. Then the
weekly counts and sentences, then the daily counts (days with messages), as many pages as
they take. Called in a worker thread: Figure objects and PdfPages use no pyplot state.

Chinese needs a CJK font that matplotlib can find (Debian's fonts-wqy-microhei, Noto Sans
CJK, …: `cjk_font`); without one the report is written in English (report.mood_report).
Fonts are embedded as TrueType (Type 42) subsets, so the text can be searched and copied.
"""

from __future__ import annotations

import functools
import io
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.chat import texts
from engine.chat.chart import draw_mood_chart

if TYPE_CHECKING:
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontManager

    from engine.chat.report_data import ReportData

PAGE_IN = (8.27, 11.69)  # A4 portrait
MARGIN_IN = 0.7
LINE_IN = 0.22  # one 10 pt line and its spacing
CHART_IN = 3.6
LINE_WIDTH = 95  # what a 10 pt line holds, in Latin letters (a CJK character counts two)
# Names matplotlib knows CJK fonts by, preferred first (Debian, then other systems).
CJK_FONTS = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
)
# x positions (inches from the left edge) of the table columns
WEEK_COLUMNS = (0.7, 2.5, 3.4, 4.2, 5.0, 5.8, 6.7)
DAY_COLUMNS = (0.7, 2.5, 3.4, 4.2, 5.0, 5.8)
NO_LINE_START = frozenset("。，、；：！？）」』,.;:!?)")


@functools.cache
def cjk_font() -> str | None:
    """The first of CJK_FONTS that matplotlib can find on this machine, else None. Blocking
    (it may list the system's fonts): call it in a worker thread."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    found = _first_cjk(manager)
    if found is None:
        # matplotlib keeps its font list in a cache made when it first ran: a font installed
        # since (apt-get install fonts-wqy-microhei) is added here, once per process.
        known = {font.fname for font in manager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known:
                try:
                    manager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue  # a font file matplotlib cannot read is simply not used
        found = _first_cjk(manager)
    return found


def _first_cjk(manager: FontManager) -> str | None:
    installed = {font.name for font in manager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


class _Pages:
    """Lines and table rows placed top to bottom, a new page when one is full."""

    def __init__(self, pdf: PdfPages, family: list[str]) -> None:
        self.pdf, self.family = pdf, family
        # CJK fonts come in one weight: headings are set apart by size alone.
        self.bold_ok = len(family) == 1
        self.count = 0
        self._new_page()

    def _new_page(self) -> None:
        from matplotlib.figure import Figure

        self.fig: Figure = Figure(figsize=PAGE_IN)
        self.y = PAGE_IN[1] - MARGIN_IN  # inches from the bottom edge

    def finish(self) -> None:
        self.pdf.savefig(self.fig)
        self.count += 1

    def need(self, height: float) -> None:
        if self.y - height < MARGIN_IN:
            self.finish()
            self._new_page()

    def row(self, cells: Sequence[str], xs: Sequence[float], size: float = 10,
            bold: bool = False) -> None:  # fmt: skip
        self.need(LINE_IN * size / 10)
        self.y -= LINE_IN * size / 10
        weight = "bold" if bold and self.bold_ok else "normal"
        for cell, x in zip(cells, xs, strict=True):
            self.fig.text(x / PAGE_IN[0], self.y / PAGE_IN[1], cell, fontsize=size,
                          family=self.family, weight=weight)  # fmt: skip

    def line(self, text: str, size: float = 10, bold: bool = False) -> None:
        self.row([text], [MARGIN_IN], size, bold)

    def paragraph(self, text: str, width: int) -> None:
        for part in _wrap(text, width):
            self.line(part)

    def gap(self, lines: float = 0.6) -> None:
        self.y -= LINE_IN * lines

    def chart(self, data: ReportData, words: dict[str, str]) -> None:
        """/mood's chart, its words in the report's language: the heading above it names it
        and the lines above that hold its counts, so its own title and summary go."""
        self.need(CHART_IN)
        self.y -= CHART_IN
        left, width = MARGIN_IN / PAGE_IN[0], 1 - 2 * MARGIN_IN / PAGE_IN[0]
        # Room below the axes for the day labels.
        bottom, height = (self.y + 0.4) / PAGE_IN[1], (CHART_IN - 0.6) / PAGE_IN[1]
        ax = self.fig.add_axes((left, bottom, width, height))
        draw_mood_chart(ax, data.period)
        ax.set_title("")
        for text in list(ax.texts):
            text.remove()
        ax.set_ylabel(words["messages"], family=self.family)
        bars = ax.containers  # negative, neutral when there is any, positive: as drawn
        for container in bars:
            container.set_label(words[str(container.get_label())])
        # Reversed so the legend stacks like the bars: positive on top.
        ax.legend(bars[::-1], [str(bar.get_label()) for bar in bars[::-1]], loc="upper right",
                  prop={"family": self.family, "size": 9})  # fmt: skip


def render_report_pdf(data: ReportData) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    # Type 42 keeps the glyphs' Unicode (Type 3, the default, loses it for text extraction).
    # Only the PDF backend reads this key, and only this module writes PDFs.
    matplotlib.rcParams["pdf.fonttype"] = 42
    words = texts.REPORT_WORDS[data.language]
    cjk = cjk_font() if data.language == "zh" else None
    buffer = io.BytesIO()
    metadata = {"Title": words["title"], "Creator": "All-in-One Bot", "CreationDate": None}
    with PdfPages(buffer, metadata=metadata) as pdf:
        pages = _Pages(pdf, ["DejaVu Sans", *([cjk] if cjk else [])])
        _front(pages, data, words)
        _weeks(pages, data, words)
        _days(pages, data, words)
        pages.finish()
    return buffer.getvalue()


def _front(pages: _Pages, data: ReportData, words: dict[str, str]) -> None:
    """The period, its counts, mood and trend, the corrections, and the chart."""
    period, language = data.period, data.language
    pages.line(words["title"], size=18, bold=True)
    first, last = period.series[0].day, period.series[-1].day
    pages.line(texts.report_period(first, last, period.days, data.zone, language))
    pages.line(f"{data.made_at:%Y-%m-%d %H:%M}", size=8)
    pages.gap()
    pages.paragraph(texts.report_totals(period, language), LINE_WIDTH)
    pages.paragraph(texts.report_trend(period, language), LINE_WIDTH)
    changes = list(data.changes)
    for text in texts.report_corrections(data.corrected, period.total, changes, language):
        pages.line(text)
    pages.gap()
    pages.line(words["chart"], size=12, bold=True)
    pages.chart(data, words)


def _weeks(pages: _Pages, data: ReportData, words: dict[str, str]) -> None:
    """The weekly table (every week), then a sentence for each week with messages."""
    pages.gap()
    pages.line(words["weeks"], size=12, bold=True)
    heads = ("week", "messages", "positive", "neutral", "negative", "mood", "corrected")
    pages.row([words[key] for key in heads], WEEK_COLUMNS, bold=True)
    for week in data.weeks:
        block = week.report
        share = "–" if block.positive_share is None else f"{block.positive_share:.0%}"
        counts = (block.total, block.positive, block.neutral, block.negative)
        span = f"{week.first:%m-%d} – {week.last:%m-%d}"
        pages.row([span, *map(str, counts), share, str(week.corrected)], WEEK_COLUMNS)
    pages.gap()
    pages.line(words["sentences"], size=12, bold=True)
    for week in data.weeks:
        if week.report.total:  # a year has many empty weeks: the table shows them
            pages.paragraph(week.sentence, LINE_WIDTH)
            pages.gap(0.3)
    pages.line(words["template"], size=8)


def _days(pages: _Pages, data: ReportData, words: dict[str, str]) -> None:
    """One row per day with messages."""
    pages.gap()
    pages.line(words["days"], size=12, bold=True)
    heads = ("day", "messages", "positive", "neutral", "negative", "corrected")
    pages.row([words[key] for key in heads], DAY_COLUMNS, bold=True)
    for point in data.period.series:
        if point.total:
            counts = (point.total, point.positive, point.neutral, point.negative,
                      data.corrected_by_day.get(point.day, 0))  # fmt: skip
            pages.row([f"{point.day}", *map(str, counts)], DAY_COLUMNS)
    pages.line(words["empty_days"], size=8)


def _wrap(text: str, width: int) -> list[str]:
    """Lines at most `width` wide, a CJK character counting two: at spaces in English, at any
    character in Chinese (but never before a closing punctuation mark)."""
    if not any(_wide(ch) for ch in text):
        return textwrap.wrap(text, width) or [""]
    lines, line, used = [], "", 0
    for ch in text:
        size = 2 if _wide(ch) else 1
        if used + size > width and line and ch not in NO_LINE_START:
            lines.append(line)
            line, used = "", 0
        line += ch
        used += size
    return [*lines, line]


def _wide(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"
