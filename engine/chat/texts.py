"""What the bot says to people (as opposed to prompts, which are what the model is told).

The UI is Chinese first with English alongside, matching the product's audience.
"""

from __future__ import annotations

from datetime import date, time, tzinfo
from typing import TYPE_CHECKING

from engine.language import Language, detect_language
from engine.types import MoodEvent, MoodReport, Sentiment, Tone

if TYPE_CHECKING:
    from engine.chat.findings import Explanation, WeekFacts

LABEL_EMOJI: dict[Tone, str] = {"positive": "😄", "negative": "😔", "neutral": "😐"}
LABEL_WORD: dict[Tone, str] = {"positive": "正面", "negative": "负面", "neutral": "中性"}


def label_line(sentiment: Sentiment, with_score: bool = True) -> str:
    """The line shown the moment a message is tagged, e.g. `😄 情感判断: 正面 (0.96)`.

    The number is the label's calibrated confidence; a neutral message shows none (it is
    neutral because neither side is likely enough to show)."""
    tone = sentiment.tone
    line = f"{LABEL_EMOJI[tone]} 情感判断: {LABEL_WORD[tone]}"
    if not with_score or sentiment.neutral:
        return line
    return f"{line} ({sentiment.confidence:.2f})"


EMPTY_MESSAGE = "我没有看到文字内容，发一句话给我吧。 (Send me some text and I'll reply.)"
BUSY = "我现在有点忙，请稍后再试。 (I'm busy right now — please try again in a moment.)"
SLOW_DOWN = (
    "你发得太快了，我还在回复前面的消息。请等我回复后再发。 "
    "(You're sending messages faster than I can answer — please wait for my replies.)"
)
TIMEOUT = "这次回复花的时间太长了，请再试一次。 (That took too long — please try again.)"
MODEL_ERROR = "抱歉，我这边出了点问题，没能回复。 (Sorry, something went wrong on my side.)"
STORAGE_ERROR = (
    "抱歉，我暂时无法读写心情记录，请稍后再试。 "
    "(Sorry, the mood journal is unavailable right now — please try again later.)"
)
# Above an answer sent after a restart, when the reply begun before it cannot be completed
# in place (nothing had been sent yet, or that message is gone).
RETRY_NOTE = "🔁 重启后补上的回复 (answered after a restart)"
# Added to the answer after a restart when a send of it was under way as the process died:
# Telegram may have posted that message without the bot learning its id (no idempotent send,
# no way to list a chat's messages), so the user may see a cut-off copy beside the answer.
CUT_OFF_COPY: dict[Language, str] = {
    "zh": "⚠️ 中断时可能多发了一条不完整的消息，请以这条回复为准",
    "en": "⚠️ A cut-off copy may have been sent when I was interrupted; this reply is complete",
}


def cut_off_copy(user_text: str) -> str:
    """CUT_OFF_COPY in the language of the user's message."""
    return CUT_OFF_COPY[detect_language(user_text)]


# Discord: a message sent while no bot process was connected, answered at the next start.
LATE_NOTE = "🔁 你发消息时我不在线，现在补上回复 (answered late: I was offline)"
NOT_TEXT = "我目前只能读懂文字消息。 (I can only read text messages for now.)"
NOT_ALLOWED = "抱歉，这个机器人只对部分用户开放。 (Sorry, this bot is private.)"
UNKNOWN_COMMAND = "我不认识这个命令，发送 /help 查看可用命令。 (Unknown command — see /help.)"
# Discord: a "/name" typed and sent as text, not picked from the slash-command menu.
PICK_FROM_MENU = (
    "命令需要从输入框的 / 菜单中选择，例如 /mood。 (Pick commands from the / menu, e.g. /mood.)"
)

INTRO = (
    "你好！我是 All-in-One Bot 🤗\n"
    "我会先判断你每条消息的情感（正面或负面），再用合适的语气回复你："
    "你难过时安慰你，你开心时和你一起开心。\n"
    "Hi! I tag the mood of each message (positive or negative) and reply in a matching tone."
)


def privacy_text(turns_kept: int) -> str:
    """What is stored and for how long; `turns_kept`: ChatConfig.kept_turns."""
    return (
        "我保存的内容：每条消息的情感标签、置信度和时间（用于 /mood，直到你 /forget），"
        f"以及每个聊天最近的 {turns_kept} 条对话（用于上下文，更早的会被删除）。"
        "消息原文只在管理员开启 STORE_MESSAGE_TEXT 时作为摘录保存；"
        "回复完成前会暂存原文，以便重启后补上回复，回复后即删除。"
        "/reset 清除对话记忆，/forget 删除关于你的一切。\n"
        "What I store: each message's label, confidence and time (for /mood, until you "
        f"/forget) and the last {turns_kept} turns of each chat (for context; older ones are "
        "deleted). A message's text is held only until it is answered, so that a restart "
        "can still answer it. /reset clears the conversation, /forget deletes everything "
        "about you."
    )


COMMANDS: dict[str, str] = {
    "start": "介绍与隐私说明 (intro and what is stored)",
    "help": "查看帮助 (show help)",
    "mood": "心情：/mood 30、/mood why、/mood week、/mood report 90 报告 (history, why, week, PDF)",
    "reset": "清除对话记忆 (clear conversation memory)",
    "forget": "删除关于你的所有数据 (delete all your data)",
    "digest": "每周心情小结：/digest on 或 off (weekly summary on/off)",
    "checkin": "每日问候：/checkin 21:00 [时区] 或 off (a daily check-in at your time, or off)",
}


def help_text() -> str:
    lines = [INTRO, "", "命令 (commands):"]
    lines += [f"/{name} — {about}" for name, about in COMMANDS.items()]
    return "\n".join(lines)


# What /start offers besides chatting (the check-in is opt-in, so it is offered, never assumed).
CHECKIN_INVITE = (
    "想让我每天问问你过得怎么样？发送 /checkin 21:00（可加时区，如 Asia/Shanghai），"
    "/checkin off 关闭。 (Want me to ask how your day went, every day? Send /checkin 21:00, "
    "a time zone may follow, e.g. Europe/Berlin; /checkin off stops it.)"
)


def start_text(turns_kept: int) -> str:
    privacy = privacy_text(turns_kept)
    more = "发送 /help 查看命令。 (Send /help for commands.)"
    return f"{INTRO}\n\n{privacy}\n\n{CHECKIN_INVITE}\n\n{more}"


RESET_DONE = (
    "好的，我已经忘掉了这段对话的上下文。心情记录还在。 "
    "(Conversation memory cleared; mood history kept.)"
)
FORGET_ASK = (
    "这会永久删除我保存的关于你的所有数据（心情记录和对话），无法恢复。确定吗？\n"
    "This permanently deletes everything I store about you. Are you sure?"
)
FORGET_YES_BUTTON = "确认删除 (Delete)"
FORGET_NO_BUTTON = "取消 (Cancel)"
FORGET_NOT_YOURS = "只有发起 /forget 的人可以确认。 (Only the person who asked can answer this.)"
FORGET_CANCELLED = "已取消，什么都没有删除。 (Cancelled — nothing was deleted.)"


def console_confirm_hint(command: str) -> str:
    """The console has no buttons: a typed `/<command> confirm` answers a confirmation."""
    return f"发送 /{command} confirm 确认。 (Send /{command} confirm to go ahead.)"


def forget_done(rows: int) -> str:
    return f"已删除关于你的所有数据（{rows} 条记录）。 (Deleted everything about you: {rows} rows.)"


def bad_days(raw: str) -> str:
    # The argument is echoed, but never so much that the answer outgrows a platform message.
    shown = raw if len(raw) <= 20 else raw[:20] + "…"
    return f"天数需要是 1 到 365 之间的整数，例如 /mood 30。 (Days must be 1–365, got {shown!r}.)"


# --- /mood ---------------------------------------------------------------------------------

EXCERPT_CHARS = 24  # of a stored excerpt, in the latest entries


def mood_report(report: MoodReport, had_previous: bool, tz: tzinfo) -> str:
    days = report.days
    period = "今天" if days == 1 else f"最近 {days} 天"
    period_en = "today" if days == 1 else f"last {days} days"
    if report.total == 0:
        if had_previous:
            return (
                f"{period}还没有心情记录。和我聊聊吧，我会记录每条消息的情感。"
                f" (No mood entries {period_en} — just chat with me.)"
            )
        return (
            "还没有心情记录。和我聊聊吧，我会记录每条消息的情感。"
            " (No mood history yet — just chat with me.)"
        )
    first, last = report.series[0].day, report.series[-1].day
    counts: dict[Tone, int] = {
        "positive": report.positive,
        "neutral": report.neutral,
        "negative": report.negative,
    }
    shares = _percentages(list(counts.values()))
    parts = [
        f"{LABEL_EMOJI[tone]} {LABEL_WORD[tone]} {count} ({share}%)"
        for (tone, count), share in zip(counts.items(), shares, strict=True)
        if count or tone != "neutral"  # a history without small talk reads as before
    ]
    lines = [
        f"📊 {period}的心情 (mood, {period_en})",
        f"共 {report.total} 条: " + " · ".join(parts),
        f"每日 {report.sparkline}  ({_day_label(first, last)} → {_day_label(last, first)})",
        _trend_line(report),
        "最近:",
    ]
    lines += ["  " + _event_line(event, tz) for event in report.latest]
    return "\n".join(lines)


def _percentages(counts: list[int]) -> list[int]:
    """Whole percentages that add up to 100 (the largest share absorbs the rounding)."""
    total = sum(counts)
    shares = [round(count * 100 / total) for count in counts]
    shares[counts.index(max(counts))] += 100 - sum(shares)
    return shares


def _trend_line(report: MoodReport) -> str:
    days = report.days
    trend = report.trend
    if trend is None:
        return f"趋势: 前 {days} 天没有记录，暂无可比较 (no earlier data to compare)"
    points = round(trend * 100)
    if points > 0:
        return f"趋势: 比前 {days} 天 ↑ {points} 个百分点 (up {points} pts vs previous period)"
    if points < 0:
        return f"趋势: 比前 {days} 天 ↓ {-points} 个百分点 (down {-points} pts vs previous period)"
    return f"趋势: 与前 {days} 天持平 → (about the same as the previous period)"


def _event_line(event: MoodEvent, tz: tzinfo) -> str:
    stamp = event.created_at.astimezone(tz).strftime("%m-%d %H:%M")
    tone = event.tone
    line = f"{stamp} {LABEL_EMOJI[tone]} {LABEL_WORD[tone]}"
    if event.corrected is not None:
        line += " ✎"  # the user's own correction: the model's confidence is not about it
    elif tone != "neutral":
        confidence = event.p_positive if tone == "positive" else 1.0 - event.p_positive
        line += f" {confidence:.2f}"
    if event.excerpt:
        excerpt = " ".join(event.excerpt.split())
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[: EXCERPT_CHARS - 1] + "…"
        line += f" 「{excerpt}」"
    return line


def _day_label(day: date, other: date) -> str:
    # Month-day is enough unless the range crosses a year boundary.
    return day.strftime("%m-%d" if day.year == other.year else "%Y-%m-%d")


# --- /mood why (engine/chat/why.py) ---------------------------------------------------------------

LABEL_WORD_EN: dict[Tone, str] = {"positive": "positive", "negative": "negative",
                                  "neutral": "neutral"}  # fmt: skip
WHY_NOTHING = (
    "还没有可以解释的消息：先和我聊几句吧。 (There is no message of yours to explain yet.)"
)


def why_no_text(keep_minutes: int) -> str:
    return (
        "我没有你最近那条消息的原文，所以无法解释它的情感判断："
        f"原文只在内存里保留 {keep_minutes} 分钟（重启后也会消失），"
        "管理员开启 STORE_MESSAGE_TEXT 时才会保存摘录。发一条新消息后再试 /mood why。\n"
        "I no longer have the text of your latest message, so I can't explain its label: the "
        f"text is kept in memory for {keep_minutes} minutes only (and not across a restart), "
        "and stored only when the admin sets STORE_MESSAGE_TEXT=true. Send a message, then "
        "/mood why again."
    )


def why_explanation(explanation: Explanation, from_excerpt: bool) -> str:
    """The answer to /mood why, in the message's language."""
    zh = explanation.language == "zh"
    whole = explanation.sentiment
    tone = whole.tone
    score = f"{whole.p_positive:.2f}"
    if zh:
        lines = [f"🔎 为什么是「{LABEL_WORD[tone]}」？（正面概率 {score}）"]
    else:
        lines = [f"🔎 Why “{LABEL_WORD_EN[tone]}”? (p positive {score})"]
    strongest = explanation.strongest()
    if not explanation.effects:
        lines.append(
            "这条消息只有一句，没有可以拿掉的部分：整句话决定了这个分数。"
            if zh
            else "The message is a single clause, so there is nothing to leave out: "
            "the whole of it gives this score."
        )
    elif not strongest:
        lines.append(
            "没有哪一句单独明显改变分数（拿掉任何一句，变化都小于 0.05）：是整条消息一起决定的。"
            if zh
            else "No single part moved the score much (leaving out any one changed it by "
            "less than 0.05): the message as a whole carries it."
        )
    for effect in strongest:
        clause = _quoted(effect.clause)
        towards: Tone = "positive" if effect.shift > 0 else "negative"
        change = f"{score} → {effect.without:.2f}"
        if zh:
            word = LABEL_WORD[towards]
            lines.append(f"• 「{clause}」把分数推向{word}（拿掉它：{change}）")
        else:
            lines.append(f"• “{clause}” pulled the score towards {towards} ({change} without it)")
    lines.append(
        "（由同一个模型给整条消息和每次去掉一句后的消息打分得出。）"
        if zh
        else "(Scored by the same model: the whole message, and the message without each part.)"
    )
    if from_excerpt:
        lines.append("（依据保存的摘录。）" if zh else "(From the stored excerpt.)")
    return "\n".join(lines)


def _quoted(clause: str, limit: int = 60) -> str:
    clause = " ".join(clause.split())
    return clause if len(clause) <= limit else clause[: limit - 1] + "…"


# --- /mood week and the weekly digest (engine/chat/week.py, digest.py) ---------------------------

WEEK_TITLE: dict[Language, str] = {"zh": "📅 本周心情小结", "en": "📅 Your week"}
DIGEST_TITLE: dict[Language, str] = {"zh": "📬 每周心情小结", "en": "📬 Your weekly mood digest"}
WEEK_FALLBACK_NOTE: dict[Language, str] = {
    "zh": "（模型这次没能写出小结，以上是按统计生成的句子。）",
    "en": "(The model could not write the summary this time; this sentence is a template.)",
}
_WEEKDAY: dict[Language, tuple[str, ...]] = {
    "zh": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}


def week_empty(language: Language) -> str:
    if language == "zh":
        return "这 7 天还没有心情记录。和我聊聊吧，下周就有小结了。"
    return "No mood entries in the last 7 days: chat with me and next week there'll be a summary."


def _day(point_day: date, language: Language) -> str:
    return f"{_WEEKDAY[language][point_day.weekday()]} {point_day:%m-%d}"


def week_facts_text(facts: WeekFacts) -> str:
    """The week's facts as a list, in its language: what the first /mood week prompt gave
    the model (see engine/chat/prompts.py); benchmarks.quality.week checks that no summary copies a
    line of it."""
    report, zh = facts.report, facts.language == "zh"
    share = report.positive_share or 0.0
    if zh:
        lines = [
            "用户最近 7 天的心情事实：",
            f"- 消息 {report.total} 条：正面 {report.positive}，负面 {report.negative}，"
            f"中性 {report.neutral}",
            f"- 正面占比 {share:.0%}",
        ]
    else:
        lines = [
            "Facts about the user's last 7 days:",
            f"- {report.total} messages: {report.positive} positive, {report.negative} negative, "
            f"{report.neutral} neutral",
            f"- positive share {share:.0%}",
        ]
    trend = report.trend
    if trend is not None:
        points = round(trend * 100)
        if zh:
            way = "上升" if points > 0 else "下降" if points < 0 else "持平"
            lines.append(f"- 和前 7 天相比：{way} {abs(points)} 个百分点")
        else:
            way = "up" if points > 0 else "down" if points < 0 else "unchanged,"
            lines.append(f"- compared with the 7 days before: {way} {abs(points)} points")
    if facts.best is not None:
        best = facts.best
        if zh:
            day = _day(best.day, "zh")
            lines.append(f"- 最好的一天：{day}（{best.positive} 条正面，共 {best.total} 条）")
        else:
            lines.append(
                f"- best day: {_day(best.day, 'en')} ({best.positive} of {best.total} positive)"
            )
    if facts.worst is not None:
        worst = facts.worst
        if zh:
            day = _day(worst.day, "zh")
            lines.append(f"- 最难的一天：{day}（{worst.negative} 条负面，共 {worst.total} 条）")
        else:
            day = _day(worst.day, "en")
            lines.append(f"- hardest day: {day} ({worst.negative} of {worst.total} negative)")
    if facts.excerpts:
        said = "；".join(f"「{e}」" for e in facts.excerpts)
        lines.append(f"- 用户说过：{said}" if zh else f"- things they wrote: {said}")
    return "\n".join(lines)


def _share_words(report: MoodReport, zh: bool) -> str:
    """The week's mood share in words. With neutral messages it is not the share of
    positive ones (a neutral one counts half: engine.types.mood_share, which the trend
    compares too), so it is named for what it is."""
    share = report.positive_share or 0.0
    if not report.neutral:
        return f"正面占 {share:.0%}" if zh else f"{share:.0%} positive"
    if zh:
        return f"心情分 {share:.0%}（中性算一半）"
    return f"a mood score of {share:.0%} (neutral counts half)"


def week_opening(facts: WeekFacts) -> str:
    """The summary's first sentence, written by this template from the facts (the model
    writes the sentences after it): every number and day of the summary is here."""
    report, zh = facts.report, facts.language == "zh"
    counts = [(report.positive, "正面", "positive"), (report.negative, "负面", "negative"),
              (report.neutral, "中性", "neutral")]  # fmt: skip
    trend = None if report.trend is None else round(report.trend * 100)
    if zh:
        parts = "、".join(f"{n} 条{word}" for n, word, _ in counts if n)
        text = f"这 7 天你发了 {report.total} 条消息，{parts}，{_share_words(report, zh)}"
        if trend is not None:
            way = f"上升 {trend} 个百分点" if trend > 0 else f"下降 {-trend} 个百分点"
            text += f"，比前 7 天{way}" if trend else "，和前 7 天持平"
        if facts.best is not None:
            text += f"；心情最好的是{_day(facts.best.day, 'zh')}"
            if facts.worst is not None:
                text += f"，最难的是{_day(facts.worst.day, 'zh')}"
        return text + "。"
    parts = ", ".join(f"{n} {word}" for n, _, word in counts if n)
    noun = "message" if report.total == 1 else "messages"
    text = f"In the last 7 days you sent {report.total} {noun} ({parts}), "
    text += _share_words(report, zh)
    if trend is not None:
        way = f"up {trend} points" if trend > 0 else f"down {-trend} points"
        text += f", {way} on the 7 days before" if trend else ", the same as the 7 days before"
    if facts.best is not None:
        text += f"; your best day was {_day(facts.best.day, 'en')}"
        if facts.worst is not None:
            text += f" and your hardest {_day(facts.worst.day, 'en')}"
    return text + "."


def week_mood(facts: WeekFacts) -> str:
    """What the model is told about the week (its user message): the mood's direction and
    its change in words, no numbers and no days (the opening has them: a number handed to
    the 0.5B model came back attached to the wrong thing), and the stored excerpts."""
    report, zh = facts.report, facts.language == "zh"
    share = report.positive_share or 0.0
    if report.neutral * 2 > report.total:
        mood = ("大多平静", "mostly calm")
    elif share >= 0.6:
        mood = ("以开心为主", "mostly good")
    elif share <= 0.4:
        mood = ("以低落为主", "mostly low")
    else:
        mood = ("有起有落", "mixed, with ups and downs")
    trend = report.trend
    change = None
    if trend is not None:
        change = (("比上周好", "better than the week before") if trend >= 0.1
                  else ("比上周难一些", "harder than the week before") if trend <= -0.1
                  else ("和上周差不多", "about the same as the week before"))  # fmt: skip
    if zh:
        text = f"用户这周的心情：{mood[0]}" + (f"，{change[0]}" if change else "") + "。"
        if facts.excerpts:
            text += "用户写过：" + "；".join(f"「{e}」" for e in facts.excerpts) + "。"
        # Told only the mood, the model explained it ("低落主要体现在学习和工作上"): asked
        # for a sentence to the user, it speaks to them instead.
        return text + "请对用户说一句话。"
    text = f"The user's mood this week: {mood[1]}" + (f", {change[1]}" if change else "") + "."
    if facts.excerpts:
        text += " They wrote: " + "; ".join(f'"{e}"' for e in facts.excerpts) + "."
    return text


def week_fallback(facts: WeekFacts) -> str:
    """The templated sentence used when the model fails, saying that it is one."""
    report, zh = facts.report, facts.language == "zh"
    if zh:
        text = f"这 7 天你发了 {report.total} 条消息，{_share_words(report, zh)}。"
        if facts.best is not None:
            text += f"{_day(facts.best.day, 'zh')}心情最好。"
    else:
        text = f"You sent {report.total} messages in the last 7 days, {_share_words(report, zh)}."
        if facts.best is not None:
            text += f" Your best day was {_day(facts.best.day, 'en')}."
    return f"{text}\n{WEEK_FALLBACK_NOTE[facts.language]}"


def week_text(title: str, summary: str, report: MoodReport) -> str:
    """/mood week's answer (and the digest's): the title, the sentences, the counts."""
    counts = (
        f"{LABEL_EMOJI['positive']} {report.positive} · {LABEL_EMOJI['neutral']} {report.neutral}"
        f" · {LABEL_EMOJI['negative']} {report.negative}   {report.sparkline}"
    )
    return f"{title}\n\n{summary}\n\n{counts}"


# --- /mood report: the PDF (engine/chat/report.py, report_pdf.py) -------------------------------

REPORT_WORDS: dict[Language, dict[str, str]] = {
    "zh": {
        "title": "心情报告",
        "chart": "每日心情",
        "weeks": "每周统计",
        "sentences": "每周小结",
        "days": "每日统计",
        "week": "周",
        "day": "日期",
        "messages": "消息",
        "positive": "正面",
        "neutral": "中性",
        "negative": "负面",
        "mood": "心情分",
        "corrected": "更正",
        "empty_days": "没有消息的日子不列出。",
        "template": "每周小结由统计数字按模板写成（不经过模型）。",
    },
    "en": {
        "title": "Mood report",
        "chart": "Daily mood",
        "weeks": "Weekly counts",
        "sentences": "Weekly summaries",
        "days": "Daily counts",
        "week": "Week",
        "day": "Day",
        "messages": "Messages",
        "positive": "Positive",
        "neutral": "Neutral",
        "negative": "Negative",
        "mood": "Mood",
        "corrected": "Corrected",
        "empty_days": "Days without messages are not listed.",
        "template": "Weekly summaries are templated from the counts, not written by the model.",
    },
}
REPORT_FAILED = (
    "抱歉，这次没能生成报告，请稍后再试。 (Sorry, the report could not be made — try again later.)"
)
REPORT_NO_CJK_FONT = (
    "（这台服务器没有中文字体，报告用英文写成。）"
    " (This server has no Chinese font, so the report is in English.)"
)


def report_bad_days(raw: str) -> str:
    shown = raw if len(raw) <= 20 else raw[:20] + "…"
    return (
        "天数需要是 1 到 365 之间的整数，例如 /mood report 90。"
        f" (Days must be 1–365, e.g. /mood report 90; got {shown!r}.)"
    )


def report_empty(days: int) -> str:
    return (
        f"最近 {days} 天还没有心情记录，没有可以生成的报告。和我聊聊吧。"
        f" (No mood entries in the last {days} days, so there is no report yet.)"
    )


def report_caption(days: int, total: int) -> str:
    return (
        f"📄 你最近 {days} 天的心情报告（{total} 条消息）。"
        f" (Your mood report for the last {days} days: {total} messages.)"
    )


def report_period(first: date, last: date, days: int, zone: str, language: Language) -> str:
    if language == "zh":
        return f"{first} 至 {last}（{days} 天，时区 {zone}）"
    return f"{first} to {last} ({days} days, time zone {zone})"


def report_totals(report: MoodReport, language: Language) -> str:
    """The period's counts and shares (whole percentages adding up to 100), and its mood."""
    zh = language == "zh"
    counts: list[tuple[Tone, int]] = [("positive", report.positive),
                                       ("neutral", report.neutral),
                                       ("negative", report.negative)]  # fmt: skip
    shares = _percentages([count for _, count in counts])
    words = REPORT_WORDS[language]
    parts = [f"{words[tone]} {count} ({share}%)"
             for (tone, count), share in zip(counts, shares, strict=True)]  # fmt: skip
    if zh:
        return f"共 {report.total} 条消息：" + "，".join(parts) + f"；{_share_words(report, zh)}"
    noun = "message" if report.total == 1 else "messages"
    return f"{report.total} {noun}: " + ", ".join(parts) + f"; {_share_words(report, zh)}"


def report_trend(report: MoodReport, language: Language) -> str:
    zh, days = language == "zh", report.days
    if report.trend is None:
        return (
            f"前 {days} 天没有记录，无法比较。" if zh else f"No entries in the {days} days before."
        )
    points = round(report.trend * 100)
    if zh:
        way = f"上升 {points}" if points > 0 else f"下降 {-points}" if points else "持平"
        return f"和前 {days} 天相比：{way}" + (" 个百分点。" if points else "。")
    way = (
        f"up {_points(points)}" if points > 0 else f"down {_points(-points)}" if points else "level"
    )
    return f"Compared with the {days} days before: {way}."


def _points(n: int) -> str:
    return "1 point" if n == 1 else f"{n} points"


def report_corrections(
    corrected: int, total: int, changes: list[tuple[Tone, Tone, int]], language: Language
) -> list[str]:
    """The share of labels the user corrected, then each kind of correction made."""
    share = f"{corrected * 100 / total:.1f}%" if total else "0.0%"
    if language == "zh":
        lines = [f"你更正了 {corrected} / {total} 条标签（{share}）。"]
        lines += [
            f"  {LABEL_WORD[shown]} → {LABEL_WORD[tone]}：{n} 条" for shown, tone, n in changes
        ]
        return lines
    lines = [f"You corrected {corrected} / {total} labels ({share})."]
    lines += [f"  {shown} → {tone}: {n}" for shown, tone, n in changes]
    return lines


def report_week_sentence(facts: WeekFacts, first: date, last: date) -> str:
    """One week of the report in a sentence, from its counts (/mood week's opening, for a
    week that is named by its dates rather than "the last 7 days")."""
    report, zh = facts.report, facts.language == "zh"
    days = report.days
    span = f"{first:%m-%d} – {last:%m-%d}"
    if report.total == 0:
        return f"{span}：没有消息。" if zh else f"{span}: no messages."
    counts = [(report.positive, "正面", "positive"), (report.negative, "负面", "negative"),
              (report.neutral, "中性", "neutral")]  # fmt: skip
    trend = None if report.trend is None else round(report.trend * 100)
    if zh:
        parts = "、".join(f"{n} 条{word}" for n, word, _ in counts if n)
        text = f"{span}：{report.total} 条消息（{parts}），{_share_words(report, zh)}"
        if trend is not None:
            way = f"上升 {trend} 个百分点" if trend > 0 else f"下降 {-trend} 个百分点"
            text += f"，比前 {days} 天{way}" if trend else f"，和前 {days} 天持平"
        if facts.best is not None:
            text += f"；最好的是{_day(facts.best.day, 'zh')}"
            if facts.worst is not None:
                text += f"，最难的是{_day(facts.worst.day, 'zh')}"
        return text + "。"
    parts = ", ".join(f"{n} {word}" for n, _, word in counts if n)
    noun = "message" if report.total == 1 else "messages"
    text = f"{span}: {report.total} {noun} ({parts}), {_share_words(report, zh)}"
    if trend is not None:
        way = f"up {trend} points" if trend > 0 else f"down {-trend} points"
        text += (
            f", {way} on the {days} days before"
            if trend
            else f", level with the {days} days before"
        )
    if facts.best is not None:
        text += f"; best day {_day(facts.best.day, 'en')}"
        if facts.worst is not None:
            text += f", hardest {_day(facts.worst.day, 'en')}"
    return text + "."


# --- /digest ----------------------------------------------------------------------------------

DIGEST_USAGE = (
    "用法：/digest on 每周收到心情小结，/digest off 停止。 "
    "(Usage: /digest on for a weekly summary, /digest off to stop.)"
)
DIGEST_OFF = "好的，不再发送每周小结。 (Weekly digest off.)"
DIGEST_WAS_OFF = "每周小结本来就是关闭的。 (The weekly digest was already off.)"


def digest_on(day: int, at: time, zone: str, changed: bool) -> str:
    when_zh = f"每{_WEEKDAY['zh'][day]} {at:%H:%M}（{zone}）"
    when_en = f"every {_WEEKDAY['en'][day]} at {at:%H:%M} ({zone})"
    first = "好的" if changed else "已经开着了"
    first_en = "Weekly digest on" if changed else "The weekly digest is already on"
    return (
        f"{first}：{when_zh}我会把本周心情小结发到这里。/digest off 可关闭。 "
        f"({first_en}: {when_en} you'll get the week's summary here. /digest off stops it.)"
    )


# --- /checkin (engine/chat/checkin.py) ---------------------------------------------------------

CHECKIN_USAGE = (
    "用法：/checkin 21:00 每天这个时间问问你今天过得怎么样，可加时区如 /checkin 21:00 "
    "Asia/Shanghai；/checkin off 停止。 (Usage: /checkin 21:00 and I'll ask how your day went "
    "at that time every day; add a time zone, e.g. /checkin 21:00 Europe/Berlin; /checkin off "
    "stops it.)"
)
CHECKIN_OFF = "好的，不再每天问候。 (Daily check-in off.)"
CHECKIN_WAS_OFF = "每日问候本来就是关闭的。 (The daily check-in was already off.)"
CHECKIN_PRIVATE_ONLY = (
    "每日问候只发到和我的私聊里，请私聊我发送 /checkin。 "
    "(The daily check-in comes to a private chat only — message me directly and send /checkin.)"
)


def _shown(raw: str) -> str:
    return raw if len(raw) <= 20 else raw[:20] + "…"


def checkin_bad_time(raw: str) -> str:
    return (
        "时间请写成 24 小时制的 时:分，例如 /checkin 21:00。 "
        f"(Write the time as HH:MM, 24-hour, e.g. /checkin 21:00; got {_shown(raw)!r}.)"
    )


def checkin_bad_zone(raw: str) -> str:
    return (
        "我不认识这个时区，请用 IANA 名称，例如 Asia/Shanghai 或 Europe/Berlin。 "
        f"(Unknown time zone {_shown(raw)!r}: use an IANA name such as Asia/Shanghai or "
        "Europe/Berlin.)"
    )


def checkin_on(at: time, zone: str, starts_today: bool) -> str:
    start_zh, start_en = ("今天", "today") if starts_today else ("明天", "tomorrow")
    return (
        f"好的：从{start_zh}起，每天 {at:%H:%M}（{zone}）我会问问你今天过得怎么样；"
        "那天你已经来聊过的话就不打扰。/checkin off 可关闭。 "
        f"(Check-in on: from {start_en}, every day at {at:%H:%M} ({zone}) I'll ask how your day "
        "went, unless you've already written that day. /checkin off stops it.)"
    )


def checkin_status(at: time, zone: str) -> str:
    return (
        f"每日问候：每天 {at:%H:%M}（{zone}）。换时间发送 /checkin 时:分，/checkin off 关闭。 "
        f"(Daily check-in: every day at {at:%H:%M} ({zone}). /checkin HH:MM changes it, "
        "/checkin off stops it.)"
    )


# The day's question, one language at a time (the user's): short, warm, open, and never
# about the days they did not write. engine/chat/checkin.py takes them in turn.
CHECKIN_QUESTIONS: dict[Language, tuple[str, ...]] = {
    "zh": (
        "嗨，今天过得怎么样？",
        "来打个招呼 🌱 今天感觉如何？",
        "今天有什么让你印象深刻的瞬间吗？",
        "今天心情怎么样？想说多少都可以。",
        "今天过得还好吗？我在这儿听你说。",
        "今天有什么想和我聊聊的吗？",
        "今天的你，过得怎么样呀？",
    ),
    "en": (
        "Hi! How did today go for you?",
        "Checking in 🌱 How are you feeling today?",
        "What's one moment from today that stayed with you?",
        "How was your day? Say as much or as little as you like.",
        "How are things today? I'm here to listen.",
        "Anything from today you'd like to talk about?",
        "How has today been treating you?",
    ),
}


# --- the journal: corrections, linked accounts, export (engine/chat/journal.py) -------------------

JOURNAL_COMMANDS: dict[str, str] = {
    "wrong": "更正最近一条的情感标签，如 /wrong negative (correct your latest label)",
    "link": "关联另一个平台的账号 (link your account on another platform)",
    "unlink": "取消关联 (separate linked accounts)",
    "export": "导出你的数据 CSV + JSON (export your data)",
}
COMMANDS.update(JOURNAL_COMMANDS)

TONE_NAMES: dict[str, Tone] = {
    "positive": "positive", "pos": "positive", "正面": "positive", "+": "positive",
    "negative": "negative", "neg": "negative", "负面": "negative", "-": "negative",
    "neutral": "neutral", "中性": "neutral", "0": "neutral",
}  # fmt: skip


def correction_button(tone: Tone) -> str:
    return f"{LABEL_EMOJI[tone]} 其实是{LABEL_WORD[tone]} (actually {tone})"


def corrected_line(shown: Tone, tone: Tone) -> str:
    """Replaces the label line once the user has corrected it."""
    return (
        f"{LABEL_EMOJI[tone]} 情感判断: {LABEL_WORD[tone]} "
        f"(已更正，原为{LABEL_WORD[shown]} · corrected from {shown})"
    )


def correction_done(shown: Tone, tone: Tone) -> str:
    return (
        f"已更正：{LABEL_WORD[shown]} → {LABEL_WORD[tone]}，/mood 会按更正后的计算。"
        f" (Corrected: {shown} → {tone}; /mood counts the correction.)"
    )


CORRECTION_ALREADY = (
    "这条已经更正过了，不能再改。 (This label was already corrected; it stays as it is.)"
)
CORRECTION_NOT_YOURS = (
    "只有这条消息的作者可以更正它的标签。 (Only the person who wrote this message can correct it.)"
)
CORRECTION_NOT_FOUND = (
    "找不到这条消息的心情记录（可能已被删除）。 (No mood entry for this message — maybe deleted.)"
)
CORRECTION_NOTHING = "还没有可以更正的心情记录。 (No mood entry to correct yet.)"


def correction_same(tone: Tone) -> str:
    return f"它已经是{LABEL_WORD[tone]}了，没有改动。 (It is already {tone}; nothing changed.)"


def wrong_usage(latest: Tone | None) -> str:
    shown = f"最近一条是{LABEL_WORD[latest]}。 (Your latest label is {latest}.)\n" if latest else ""
    return (
        f"{shown}用法: /wrong positive|negative|neutral（正面|负面|中性）更正最近一条。"
        " (Usage: /wrong positive|negative|neutral corrects your latest label.)"
    )


def link_code_text(code: str, minutes: int) -> str:
    return (
        f"你的关联码: {code}\n在另一个平台上对我发送 /link {code}"
        f"（{minutes} 分钟内有效，只能用一次），确认后两个账号就会共享同一份心情记录。\n"
        f"Your link code: {code}. Send /link {code} to me on your other platform within "
        f"{minutes} minutes (single use); once confirmed there, the two accounts share one "
        "mood history."
    )


def link_confirm_ask(account: str, minutes: int) -> str:
    """The answer to a good code: what linking means, before anything is linked."""
    return (
        f"这个关联码属于 {account}。关联后：两个账号共用一份心情记录；在任一账号上 /export "
        "都会导出两个账号的记录和对话；在任一账号上 /forget 会删除两个账号的全部数据；"
        f"/unlink 可以再把它们分开。只有两个账号都是你自己的，才在 {minutes} 分钟内发送 "
        "/link confirm 确认（Discord 上：/link 并选 confirm: True）；不确认就什么都不会改变。\n"
        f"This code belongs to {account}. Linking means: both accounts share one mood "
        "history; /export on either shows both accounts' entries and conversations; /forget "
        "on either deletes both accounts' data; /unlink separates them again. Only if both "
        f"accounts are yours, send /link confirm within {minutes} minutes to link them (on "
        "Discord: /link with confirm: True); otherwise nothing changes."
    )


def linked_text(others: list[str]) -> str:
    names = ", ".join(others)
    return (
        f"已关联：{names}。/mood 和 /export 现在包含这些账号的记录，任一账号上的 /forget "
        f"会删除全部，/unlink 可取消。 (Linked with {names}: /mood and /export now cover "
        "them, /forget on any of them deletes all; /unlink separates.)"
    )


LINK_PRIVATE_ONLY = (
    "关联只能在私聊中进行（关联码能打开你的记录）。 "
    "(Linking works in a private chat only — a code opens your history.)"
)
LINK_INVALID = "关联码不对。 (That link code is not valid.)"
LINK_EXPIRED = (
    "这个关联码已过期或已用过，请在原平台重新发送 /link。 "
    "(That code expired or was used; send /link again there.)"
)
LINK_OWN_CODE = (
    "这是你自己这个账号的关联码，请在另一个平台上输入。 "
    "(That code is this account's own; enter it on the other platform.)"
)
LINK_ALREADY = "这两个账号已经关联了。 (These accounts are already linked.)"
LINK_SAME_PLATFORM = (
    "关联只能连接不同平台上的账号（每个平台一个）：这个关联码来自同一平台的账号，"
    "或关联后会有两个同一平台的账号。什么都没有改变。 "
    "(Linking joins accounts on different platforms only, one per platform: this code comes "
    "from an account on the same platform, or linking would join two accounts of one "
    "platform. Nothing changed.)"
)
LINK_NOTHING_TO_CONFIRM = (
    "没有待确认的关联：请先发送另一个平台给你的关联码 (/link 关联码)，看完说明再确认。 "
    "(Nothing to confirm: first send the code from your other platform (/link CODE), read "
    "what linking means, then confirm.)"
)
LINK_TOO_MANY = "尝试次数太多，请 10 分钟后再试。 (Too many attempts; try again in 10 minutes.)"
UNLINK_DONE = (
    "已取消关联：这个账号的心情记录与其他账号分开了。 "
    "(Unlinked: this account's history is separate again.)"
)
UNLINK_NONE = "这个账号没有关联其他账号。 (This account is not linked to another.)"
FORGET_ASK_LINKED = (
    "这会永久删除我保存的关于你的所有数据（心情记录和对话），包括已关联的账号，无法恢复。确定吗？\n"
    "This permanently deletes everything I store about you, linked accounts included. Are you sure?"
)

MOOD_PRIVATE_ONLY = (
    "心情记录只给你自己看，请私聊我发送 /mood。 "
    "(Your mood history is yours alone — message me directly and send /mood there.)"
)
DIGEST_PRIVATE_ONLY = (
    "每周小结只发到和我的私聊里，请私聊我发送 /digest on。 "
    "(The weekly digest goes to a private chat only — message me directly and send /digest on.)"
)
EXPORT_PRIVATE_ONLY = (
    "导出只能在私聊中使用，请私聊我发送 /export。 "
    "(Export works in a private chat only — message me directly.)"
)


def export_done(events: int, corrected: int, turns: int, support_notes: int = 0) -> str:
    if support_notes:
        return (
            f"你的数据：{events} 条心情记录（{corrected} 条已更正），{turns} 条对话，"
            f"{support_notes} 条关怀提示。 (Your data: {events} mood entries, {corrected} "
            f"corrected, {turns} turns, {support_notes} support notes.)"
        )
    return (
        f"你的数据：{events} 条心情记录（{corrected} 条已更正），{turns} 条对话。"
        f" (Your data: {events} mood entries, {corrected} corrected, {turns} turns.)"
    )


def export_saved(paths: list[str]) -> str:
    return "已保存 (saved): " + ", ".join(paths)
