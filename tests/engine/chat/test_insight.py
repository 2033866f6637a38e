"""engine.chat.why, week and digest on the scripted model (its score depends on words:
tests/scripted.py) and a real SQLite store: clauses, the attribution arithmetic, /mood why and
where its text comes from, the week's facts, prompt and fallback, /digest and the digest run."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.chat import digest, texts, week, why
from engine.chat.commands import Caller, Commands
from engine.chat.config import ChatConfig
from engine.chat.findings import WeekSummary
from engine.chat.mood import build_report
from engine.chat.prompts import WEEK_SYSTEM
from engine.chat.recent import RecentMessages
from engine.chat.service import ChatService
from engine.types import DigestSubscription, IncomingMessage, Label, MoodEvent, Sentiment, UserKey
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine

ALICE = UserKey("test", "alice")
BOB = UserKey("test", "bob")
HERE = Caller(ALICE, "chat-1")
MIXED_EN = "I lost my keys this morning, but the party was great!"
MIXED_ZH = "今天丢了钥匙，但是晚上的聚会太棒了！"


async def chat(engine: ScriptedEngine, text: str, user: UserKey = ALICE) -> None:
    async for _ in engine.service.handle(
        IncomingMessage(user.platform, user.user_id, "chat-1", text)
    ):
        pass


def spans_text(text: str) -> list[str]:
    return [text[start:end] for start, end in why.split_clauses(text)]


# --- clauses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        (MIXED_EN, ["I lost my keys this morning,", "but the party was great!"]),
        (MIXED_ZH, ["今天丢了钥匙，", "但是晚上的聚会太棒了！"]),
        ("It rained but the concert was great.", ["It rained", "but the concert was great."]),
        ("好累。。。不过还行吧😀", ["好累。。。", "不过还行吧😀"]),
        ("v3.5 is out. Nice!! 🎉", ["v3.5 is out.", "Nice!! 🎉"]),
        ("...wow. ok", ["...wow.", "ok"]),
        ("hello", ["hello"]),
        ("  ", []),
    ],
)
def test_clauses_split_at_punctuation_and_contrast_words(text: str, clauses: list[str]) -> None:
    assert spans_text(text) == clauses


def test_leaving_a_clause_out_keeps_the_rest_as_written() -> None:
    first, second = why.split_clauses(MIXED_EN)
    assert why.leave_out(MIXED_EN, first) == "but the party was great!"
    assert why.leave_out(MIXED_EN, second) == "I lost my keys this morning,"
    text = "Sad day, great dinner, long night."
    assert why.leave_out(text, why.split_clauses(text)[1]) == "Sad day, long night."
    zh = "下雨了，心情很好，没带伞。"
    assert why.leave_out(zh, why.split_clauses(zh)[1]) == "下雨了，没带伞。"


def test_attribution_is_the_whole_score_minus_the_score_without_each_clause() -> None:
    text = "a, b, c"
    spans = why.split_clauses(text)
    whole = Sentiment.from_p_positive(0.8)
    without = [Sentiment.from_p_positive(p) for p in (0.78, 0.2, 0.95)]
    explanation = why.attribute(text, spans, whole, without)
    assert [(e.clause, e.without) for e in explanation.effects] == [
        ("a,", 0.78), ("b,", 0.2), ("c", 0.95)
    ]  # fmt: skip
    assert [round(e.shift, 2) for e in explanation.effects] == [0.02, 0.6, -0.15]
    # Largest moves first; "a" moved it by under MIN_SHIFT and is not named.
    assert [e.clause for e in explanation.strongest()] == ["b,", "c"]


async def test_explain_scores_everything_in_one_batched_pass(
    scripted_engine: ScriptedEngine,
) -> None:
    explanation = await why.explain(scripted_engine.worker.tag_many, MIXED_EN)
    # One runner call: the whole message, then the message without each clause.
    assert scripted_engine.runner.tag_calls == [
        [MIXED_EN, "but the party was great!", "I lost my keys this morning,"]
    ]
    assert explanation.sentiment.p_positive == 0.9
    assert [e.clause for e in explanation.strongest()] == ["but the party was great!"]
    assert explanation.strongest()[0].without == 0.1
    assert explanation.language == "en"


# --- /mood why -----------------------------------------------------------------------------------


async def test_why_explains_the_latest_message_in_its_language(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    assert (await commands.run("mood", HERE, "why")).text == texts.WHY_NOTHING
    await chat(scripted_engine, MIXED_EN)
    answer = (await commands.run("mood", HERE, " WHY ")).text
    assert answer.startswith("🔎 Why “positive”? (p positive 0.90)")
    assert "“but the party was great!” pulled the score towards positive (0.90 → 0.10" in answer
    assert "lost my keys" not in answer  # leaving it out changed nothing

    await chat(scripted_engine, MIXED_ZH.replace("太棒了", "很糟糕"))
    answer = (await commands.run("mood", HERE, "why")).text
    assert answer.startswith("🔎 为什么是「负面」？（正面概率 0.10）")
    assert "没有哪一句单独明显改变分数" in answer  # no clause alone holds the positive word

    await chat(scripted_engine, "great")
    assert "只有一句" not in (await commands.run("mood", HERE, "why")).text  # English
    assert "single clause" in (await commands.run("mood", HERE, "why")).text


async def test_why_without_the_text_says_so_and_with_stored_text_uses_the_excerpt(
    scripted_engine: ScriptedEngine,
) -> None:
    await chat(scripted_engine, MIXED_EN)
    # A restart: a new service on the same store has no message in memory.
    restarted = ChatService(scripted_engine.worker, scripted_engine.store, SYSTEM_LAYOUT)
    answer = await why.why(restarted, ALICE)
    assert answer == texts.why_no_text(30)
    assert "STORE_MESSAGE_TEXT" in answer

    storing = SYSTEM_LAYOUT.model_copy(update={"store_message_text": True})
    keeper = ChatService(scripted_engine.worker, scripted_engine.store, storing)
    await chat_with(keeper, MIXED_EN)
    restarted = ChatService(scripted_engine.worker, scripted_engine.store, storing)
    answer = await why.why(restarted, ALICE)
    assert "“but the party was great!” pulled the score towards positive" in answer
    assert answer.endswith("(From the stored excerpt.)")


async def chat_with(service: ChatService, text: str, user: UserKey = ALICE) -> None:
    async for _ in service.handle(IncomingMessage(user.platform, user.user_id, "chat-1", text)):
        pass


async def test_why_when_the_model_fails_says_so(scripted_engine: ScriptedEngine) -> None:
    await chat(scripted_engine, MIXED_EN)
    scripted_engine.runner.fail_tag = True
    assert await why.why(scripted_engine.service, ALICE) == texts.MODEL_ERROR
    await scripted_engine.worker.stop()  # a stopped model is "busy" to the user
    assert await why.why(scripted_engine.service, ALICE) == texts.BUSY


def test_the_latest_messages_are_bounded_and_expire() -> None:
    recent = RecentMessages(keep=timedelta(minutes=30), max_users=2)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    happy = Sentiment.from_p_positive(0.9)
    recent.remember(ALICE, "one", happy, t0)
    recent.remember(BOB, "two", happy, t0)
    recent.remember(ALICE, "three", happy, t0)  # Alice is now the most recent
    recent.remember(UserKey("test", "carol"), "four", happy, t0)  # Bob goes
    assert len(recent) == 2
    assert recent.latest(BOB, t0) is None
    found = recent.latest(ALICE, t0 + timedelta(minutes=30))
    assert found is not None
    assert found.text == "three"
    assert recent.latest(ALICE, t0 + timedelta(minutes=31)) is None  # expired: dropped
    assert len(recent) == 1


async def test_forget_drops_the_message_in_memory(scripted_engine: ScriptedEngine) -> None:
    await chat(scripted_engine, MIXED_EN)
    await scripted_engine.service.forget(ALICE)
    assert scripted_engine.service.recent.latest(ALICE, scripted_engine.service.now()) is None


# --- /mood week ----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)  # a Sunday


def ev(days_ago: int, p: float, excerpt: str | None = None, neutral: bool = False) -> MoodEvent:
    label: Label = "positive" if p >= 0.5 else "negative"
    at = NOW - timedelta(days=days_ago, hours=1)
    return MoodEvent("test", "alice", "chat-1", label, p, at, excerpt, neutral)


def test_week_facts_and_the_facts_the_model_is_given() -> None:
    current = [ev(5, 0.1), ev(5, 0.2), ev(2, 0.9), ev(2, 0.8), ev(2, 0.3), ev(0, 0.55, None, True)]
    previous = [ev(9, 0.1), ev(10, 0.1)]
    report = build_report(ALICE, current, previous, 7, NOW, UTC)
    facts = week.week_facts(report, "en")
    assert facts.best is not None
    assert facts.best.day == date(2026, 11, 27)
    assert facts.worst is not None
    assert facts.worst.day == date(2026, 11, 24)
    assert facts.excerpts == ()  # nothing stored, nothing shown
    given = texts.week_facts_text(facts)
    assert "- 6 messages: 2 positive, 3 negative, 1 neutral" in given
    assert "- compared with the 7 days before: up 42 points" in given  # 0 % → 42 %
    assert "- best day: Friday 11-27 (2 of 3 positive)" in given
    assert "- hardest day: Tuesday 11-24 (2 of 2 negative)" in given
    assert "wrote" not in given

    stored = [ev(1, 0.9, "passed my  exam"), ev(0, 0.2, "missed the bus")]
    facts = week.week_facts(build_report(ALICE, stored, [], 7, NOW, UTC), "zh")
    assert facts.best is not None  # two days of messages
    one_day = week.week_facts(build_report(ALICE, stored[1:], [], 7, NOW, UTC), "zh")
    assert (one_day.best, one_day.worst) == (None, None)
    assert facts.excerpts == ("missed the bus", "passed my exam")  # newest first
    given = texts.week_facts_text(facts)
    assert "- 用户说过：「missed the bus」；「passed my exam」" in given
    assert "- 消息 2 条：正面 1，负面 1，中性 0" in given
    assert "前 7 天" not in given  # no earlier week to compare with


async def test_week_is_our_opening_then_the_models_sentences_with_counts_and_chart(
    scripted_engine: ScriptedEngine,
) -> None:
    runner = scripted_engine.runner
    await chat(scripted_engine, "I am so happy today")
    await chat(scripted_engine, "the train was late again")
    runner.reply_text = "You had ups and downs. Be kind to yourself. Extra. More."
    result = await Commands(scripted_engine.service).run("mood", HERE, "week")
    request = runner.reply_calls[-1]
    assert request.system == WEEK_SYSTEM["en"]  # the user's latest message was English
    assert request.history == ()
    assert [turn.role for turn in request.examples] == ["user", "assistant"]
    # The model is given the mood in words, never a number or a day.
    assert request.user_text == "The user's mood this week: mixed, with ups and downs."
    assert not any(ch.isdigit() for ch in request.user_text)
    assert result.text.startswith(
        "📅 Your week\n\nIn the last 7 days you sent 2 messages (1 positive, 1 negative), "
        "50% positive. You had ups and downs.\n\n"
    )  # the model's part cut after one sentence
    assert result.text.endswith(f"😄 1 · 😐 0 · 😔 1   {'·' * 6}▅")  # half positive
    assert result.chart_png is not None
    assert result.chart_png.startswith(b"\x89PNG")


def test_the_week_opening_and_the_mood_the_model_is_told() -> None:
    current = [ev(5, 0.1), ev(5, 0.2), ev(2, 0.9), ev(2, 0.8), ev(2, 0.3), ev(0, 0.55, None, True)]
    report = build_report(ALICE, current, [ev(9, 0.1), ev(10, 0.1)], 7, NOW, UTC)
    en, zh = week.week_facts(report, "en"), week.week_facts(report, "zh")
    assert texts.week_opening(en) == (
        "In the last 7 days you sent 6 messages (2 positive, 3 negative, 1 neutral), a mood "
        "score of 42% (neutral counts half), up 42 points on the 7 days before; your best day "
        "was Friday 11-27 and your hardest Tuesday 11-24."
    )
    assert texts.week_opening(zh) == (
        "这 7 天你发了 6 条消息，2 条正面、3 条负面、1 条中性，心情分 42%（中性算一半），"
        "比前 7 天上升 42 个百分点；心情最好的是周五 11-27，最难的是周二 11-24。"
    )
    assert texts.week_fallback(en).startswith(
        "You sent 6 messages in the last 7 days, a mood score of 42% (neutral counts half)."
    )
    assert texts.week_mood(en) == (
        "The user's mood this week: mixed, with ups and downs, better than the week before."
    )
    assert texts.week_mood(zh) == "用户这周的心情：有起有落，比上周好。请对用户说一句话。"
    stored = [ev(1, 0.9, "passed my exam"), ev(0, 0.8, "sunny walk")]
    good = week.week_facts(build_report(ALICE, stored, [], 7, NOW, UTC), "en")
    assert texts.week_mood(good) == (
        'The user\'s mood this week: mostly good. They wrote: "sunny walk"; "passed my exam".'
    )


async def test_week_falls_back_to_a_template_that_says_so(scripted_engine: ScriptedEngine) -> None:
    await chat(scripted_engine, "今天好开心")
    scripted_engine.runner.fail_reply_at = 0
    summary = await week.week(scripted_engine.service, ALICE, "chat-1", charts=False)
    assert not summary.written_by_model
    assert "这 7 天你发了 1 条消息，正面占 100%。" in summary.text
    assert texts.WEEK_FALLBACK_NOTE["zh"] in summary.text
    assert summary.chart_png is None


async def test_an_empty_week_needs_no_model(scripted_engine: ScriptedEngine) -> None:
    summary = await week.week(scripted_engine.service, ALICE, "chat-1")
    assert summary.text.startswith("📅 本周心情小结\n\n这 7 天还没有心情记录")
    assert summary.chart_png is None
    assert scripted_engine.runner.reply_calls == []


# --- /digest and the digest run ------------------------------------------------------------------


async def test_digest_on_off_and_usage(scripted_engine: ScriptedEngine) -> None:
    commands = Commands(scripted_engine.service)
    assert (await commands.run("digest", HERE)).text == texts.DIGEST_USAGE
    assert (await commands.run("digest", HERE, "maybe")).text == texts.DIGEST_USAGE
    on = (await commands.run("digest", HERE, "ON")).text
    assert on.startswith("好的：每周日 20:00（UTC）")
    assert "every Sunday at 20:00 (UTC)" in on
    assert "already" in (await commands.run("digest", HERE, "on")).text
    store = scripted_engine.store
    assert await store.digest_subscriptions("test") == [DigestSubscription(ALICE, "chat-1")]
    assert (await commands.run("digest", HERE, "off")).text == texts.DIGEST_OFF
    assert (await commands.run("digest", HERE, "off")).text == texts.DIGEST_WAS_OFF
    assert await store.digest_subscriptions("test") == []


def test_the_digest_time_is_read_in_the_time_zone() -> None:
    config = ChatConfig.from_env({"TIMEZONE": "Asia/Shanghai", "DIGEST_DAY": "Friday",
                                  "DIGEST_TIME": "08:30"})  # fmt: skip
    assert config is not None
    assert config.digest_weekday == 4
    assert config.digest_at.isoformat() == "08:30:00"
    assert str(config.digest_at.tzinfo) == "Asia/Shanghai"
    with pytest.raises(ValueError, match="DIGEST_TIME"):
        ChatConfig.from_env({"DIGEST_TIME": "8 pm"})
    with pytest.raises(ValueError, match="DIGEST_DAY"):
        ChatConfig.from_env({"DIGEST_DAY": "someday"})


async def test_send_digests_skips_the_unreachable_and_sends_each_once(
    scripted_engine: ScriptedEngine,
) -> None:
    service = scripted_engine.service
    users = [UserKey("test", name) for name in ("ann", "ben", "cat")]
    for user in users:
        await chat(scripted_engine, "I am so happy today", user)
        await digest.set_digest(service, user, f"chat-{user.user_id}", on=True)
    await digest.set_digest(service, UserKey("other", "ann"), "elsewhere", on=True)
    got: dict[str, str] = {}

    async def send(subscription: DigestSubscription, summary: WeekSummary) -> None:
        if subscription.user.user_id == "ben":
            raise digest.RecipientGone("Forbidden: bot was blocked by the user")
        got[subscription.chat_id] = summary.text

    run = await digest.send_digests(service, "test", send)
    assert run.sent == [users[0], users[2]]
    assert run.unreachable == [users[1]]
    assert sorted(got) == ["chat-ann", "chat-cat"]
    assert got["chat-ann"].startswith("📬 Your weekly mood digest\n\n")
    # Another process running the same job a moment later sends nothing again.
    again = await digest.send_digests(service, "test", send)
    assert again.sent == []
    assert again.already_sent == users
