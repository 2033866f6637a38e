"""Conversations, not single messages: parroting, canned repeats, tone and waiting over 6 turns.

    python -m benchmarks.quality.dialogue [--name NAME] [--split
    all|tune|report|holdout|report,holdout]
        [--seed 0] [--max-new-tokens N] [--out DIR]
    python -m benchmarks.quality.dialogue --compare DIR [DIR ...] [--group report]

Every chat of benchmarks.quality.dialogues (20 chats × 6 messages, 10 Chinese and 10 English, moods
that change within a chat; split tune / report / holdout) is sent message by message, each chat as
its own user, through ChatService.handle with the real model and a temporary SQLite store, so
every prompt carries the history the store hands back, exactly as in the bot. The model,
backend and sampling come from the environment like the bot's (BACKEND=..., MODEL=...,
TEMPERATURE=...), with a fixed seed. The goals (issue: conversations that hold up on the
default model), per reply:

- echo: the reply restates the user: half or more of the message's character 4-grams appear
  in it (`restate`), or half or more of its own 4-grams come from the message (`mostly_user`:
  made mostly of the user's words), or it speaks as the user (`as_user`, below);
- canned: the reply shares a span of 7 Chinese characters or 5 English words with an earlier
  reply of the same chat (`canned_chat`) or with one of the example answers in its prompt
  (`canned_example`);
- refusal: "I can't help/assist with that", "I'm sorry, but I can't…", 我无法帮你…,
  抱歉，我不能… (REFUSAL_PATTERNS);
- wrong_tone: cheering a bad event or commiserating with a good one: congratulations
  (celebration markers) on a message its writer meant as negative, condolences on one meant
  as positive (judged against the writer's mood, so a wrong label counts too; the transcript
  shows the label);
- language: the reply is in the message's language.
Goals on the default model: echo and canned ≤ 5 %, refusal and wrong tone 0, language 100 %
(GOALS); on the light tier at least no refusal and nothing copied from the examples.

The earlier measures, kept:

- copy: half or more of the reply's 4-grams appear in earlier replies of the same chat or in
  the example turns of its prompt;
- as_user: the reply speaks as the user: it contains a 4-word (English) or 4-character
  (Chinese) run of the user's message that says I / my / we / 我;
- finished: the model ended the reply itself, before MAX_NEW_TOKENS;
- tone: the reply's wording fits the tone the bot showed the message with, its label or
  neutral (TONE_MARKERS: comfort words, no more joy words than comfort words and no
  congratulations for negative; the other way round for positive; friendly for neutral:
  neither congratulations nor condolences). A word list, so it is
  crude (it cannot see "not great"); the transcripts show what it matched;
- distinct-2 over all replies of a group (word pairs in English, character pairs in Chinese),
  and the mean reply length in characters and tokens.
Character 4-grams are taken over the lower-cased letters and digits only (no spaces or
punctuation). Speed: the label time and the first reply token (both from the moment the
service starts the message, as the console's "ms" shows them) of each chat's first message
against its later messages, p50 and the ratio, and the prompt's size in tokens (a chat's
first message, where the persona and examples are most of it, and all messages).

It writes DIR/results.json (every reply with its flags, timings and prompt sizes) and
DIR/transcripts.md, the conversations as a person reads them, each reply followed by its
flags. `--compare` prints one row per run directory, for the README, judging saved runs by
today's metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    bench_settings,
    describe_machine,
    mean,
    peak_rss_mb,
    percentile,
    table,
)
from benchmarks.quality.dialogues import SPLITS, Dialogue, dialogues
from engine.chat.prompts import detect_language

ECHO_SHARE = 0.5
COPY_SHARE = 0.5
NGRAM = 4
FIRST_PERSON_EN = frozenset({"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "myself",
                             "we", "we're", "we've", "our", "us"})  # fmt: skip
FIRST_PERSON_ZH = "我"
MOSTLY_USER_SHARE = 0.5
CANNED_ZH_CHARS = 7  # a span this long of Chinese characters…
CANNED_EN_WORDS = 5  # …or of English words, repeated, is a canned phrase

# A reply that declines to talk ("I'm sorry, but I can't assist with that."), either language.
# Matched on the lower-cased reply with curly apostrophes straightened.
REFUSAL_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"\bi\s*(?:can't|cannot|can not|won't|will not|'m unable to|am unable to|'m not able to"
    r"|am not able to)\s+(?:be able to\s+)?(?:help|assist|provide|support|fulfil|comply"
    r"|answer|respond|engage|discuss|continue)"
    r"(?!\w)(?!\s+(?:but|thinking|feeling|wondering|smiling|laughing|noticing)\b)",
    r"\bsorry,?\s+but\s+i\s*(?:can't|cannot|can not|won't|'m unable|am unable|'m not able"
    r"|am not able)",
    r"\bunable to provide (?:the )?(?:help|assistance|support)",
    r"(?:抱歉|对不起)[，,、\s]*(?:但是?)?我(?:无法|不能|没办法|没有办法)",
    r"我(?:无法|不能|没办法|没有办法)(?:为你|为您|帮你|帮您|帮助|协助|提供|回答|处理|满足"
    r"|参与|讨论|继续)",
    r"无法(?:为你|为您)?提供(?:帮助|协助|支持|相关)",
))  # fmt: skip

# Substrings, matched on the lower-cased reply. "fits" words make a reply count as that tone;
# "clashes" words rule it out (congratulating someone who is down, pitying someone who is up).
TONE_MARKERS: dict[str, dict[str, tuple[str, ...]]] = {
    "comfort": {
        "en": ("sorry", "sad", "tough", "hard", "difficult", "understand", "frustrat",
               "disappoint", "worr", "hug", "here for you", "it's okay", "it's ok", "must be",
               "rough", "hurt", "pain", "stress", "exhaust", "overwhelm", "lonely", "normal",
               "be kind to yourself", "too hard on yourself", "take care", "gentle", "rest",
               "feel better", "comfort", "scary", "anxious", "nervous", "support"),
        "zh": ("抱歉", "难过", "难受", "辛苦", "理解", "心疼", "抱抱", "担心", "别太",
               "没关系", "慢慢来", "委屈", "不容易", "陪着你", "陪你", "安慰", "别灰心",
               "焦虑", "害怕", "正常", "休息", "放松", "照顾好自己", "别着急", "不要着急",
               "别急", "支持", "紧张", "不安", "压力"),
    },
    "joy": {
        "en": ("congrat", "great", "wonderful", "amazing", "awesome", "fantastic", "happy",
               "glad", "exciting", "excited", "proud", "yay", "well done", "brilliant",
               "delight", "celebrat", "lovely", "fun", "good news", "thrilled", "enjoy",
               "love", "incredible", "sweet", "nice"),
        "zh": ("恭喜", "太棒", "真棒", "好棒", "太好了", "开心", "高兴", "骄傲", "厉害",
               "真好", "祝贺", "庆祝", "幸福", "好消息", "不错", "享受", "期待", "值得",
               "棒", "快乐", "欣慰", "真是太", "好好"),
    },
    "celebration": {  # clashes with comfort
        "en": ("congrat", "yay", "well done", "good news", "happy for you", "so happy"),
        "zh": ("恭喜", "祝贺", "太棒了", "好消息", "为你高兴", "真为你"),
    },
    "condolence": {  # clashes with joy
        "en": ("sorry to hear", "i'm sorry", "i am sorry", "so sorry", "that's tough",
               "must be hard", "sad to hear", "that's hard"),
        "zh": ("抱歉", "难过", "心疼", "委屈", "别伤心", "遗憾"),
    },
}  # fmt: skip
TONE_RULES: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {
    # tone: (a marker group the reply needs, one that must not outnumber it, groups it must
    # not have at all)
    "negative": ("comfort", "joy", ("celebration",)),
    "positive": ("joy", "comfort", ("condolence",)),
    "neutral": (None, None, ("celebration", "condolence")),  # friendly: neither
}

# --- the metrics (pure functions; tests/benchmarks/test_dialogue.py) ---------------------------


def normalized(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def char_ngrams(text: str, n: int = NGRAM) -> set[str]:
    norm = normalized(text)
    return {norm[i : i + n] for i in range(len(norm) - n + 1)}


def echo_share(reply: str, message: str) -> float:
    """The share of the message's 4-grams that the reply repeats (0 for a very short one)."""
    grams = char_ngrams(message)
    return len(grams & char_ngrams(reply)) / len(grams) if grams else 0.0


def copy_share(reply: str, sources: Iterable[str]) -> float:
    """The share of the reply's 4-grams found in any of the sources."""
    grams = char_ngrams(reply)
    if not grams:
        return 0.0
    seen: set[str] = set()
    for source in sources:
        seen |= char_ngrams(source)
    return len(grams & seen) / len(grams)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower().replace("’", "'"))


def speaks_as_user(reply: str, message: str) -> bool:
    """The reply repeats a first-person run of the user's message as its own words."""
    if detect_language(message) == "zh":
        said, answer = normalized(message), normalized(reply)
        return any(FIRST_PERSON_ZH in said[i : i + NGRAM] and said[i : i + NGRAM] in answer
                   for i in range(len(said) - NGRAM + 1))  # fmt: skip
    said_words, answer_words = _words(message), _words(reply)
    answer_runs = {tuple(answer_words[i : i + NGRAM])
                   for i in range(len(answer_words) - NGRAM + 1)}  # fmt: skip
    for i in range(len(said_words) - NGRAM + 1):
        run = tuple(said_words[i : i + NGRAM])
        if FIRST_PERSON_EN & set(run) and run in answer_runs:
            return True
    return False


def mostly_user_share(reply: str, message: str) -> float:
    """The share of the reply's 4-grams that come from the message (0 for a very short reply)."""
    grams = char_ngrams(reply)
    return len(grams & char_ngrams(message)) / len(grams) if grams else 0.0


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def spans(text: str) -> set[str]:
    """The phrases that count as canned when repeated: every run of CANNED_ZH_CHARS Chinese
    characters (punctuation and spaces skipped) and of CANNED_EN_WORDS English words."""
    norm = normalized(text)
    n = CANNED_ZH_CHARS
    out = {norm[i : i + n] for i in range(len(norm) - n + 1)
           if all(_is_cjk(ch) for ch in norm[i : i + n])}  # fmt: skip
    words, n = _words(text), CANNED_EN_WORDS
    out |= {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}
    return out


def canned_span(reply: str, sources: Iterable[str]) -> str | None:
    """The first canned phrase the reply shares with any of the sources, or None."""
    mine = spans(reply)
    for source in sources:
        shared = mine & spans(source)
        if shared:
            return min(shared)
    return None


def refusal(reply: str) -> str | None:
    """The refusal the reply contains ("i can't assist"), or None."""
    lowered = reply.lower().replace("’", "'")
    for pattern in REFUSAL_PATTERNS:
        found = pattern.search(lowered)
        if found:
            return found.group(0)
    return None


def tone_markers(reply: str, language: str) -> dict[str, list[str]]:
    lowered = reply.lower()
    return {group: [word for word in words[language] if word in lowered]
            for group, words in TONE_MARKERS.items()}  # fmt: skip


def tone_fits(reply: str, language: str, tone: str) -> bool:
    needed, rival, clashes = TONE_RULES[tone]
    found = tone_markers(reply, language)
    if needed is not None and (
        not found[needed] or len(found[rival or needed]) > len(found[needed])
    ):
        return False
    return not any(found[c] for c in clashes)


# A reply in the wrong tone for what happened: a marker group it must not have, by the mood
# its writer meant (neutral: none, the definition covers only bad and good events).
WRONG_TONE = {"negative": "celebration", "positive": "condolence"}


def wrong_tone(reply: str, language: str, mood: str) -> list[str]:
    """The cheering words of a reply to bad news, the pitying ones of a reply to good news."""
    group = WRONG_TONE.get(mood)
    return tone_markers(reply, language)[group] if group else []


def units(text: str) -> list[str]:
    """Words of an English reply, characters of a Chinese one (for distinct-n)."""
    return list(normalized(text)) if detect_language(text) == "zh" else _words(text)


def distinct_n(texts: Sequence[str], n: int = 2) -> float | None:
    """Distinct n-grams over all n-grams of the texts (each text's own n-grams)."""
    grams = [tuple(u[i : i + n]) for u in map(units, texts) for i in range(len(u) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def example_answers(row: dict[str, Any]) -> list[str]:
    """The example answers of the reply's prompt (all example turns for runs saved before the
    answers were recorded apart)."""
    answers = row.get("example_answers")
    return list(answers if answers is not None else row.get("examples", []))


def flag_reply(row: dict[str, Any], earlier_replies: Sequence[str]) -> dict[str, Any]:
    """The quality flags of one reply: row has message, reply, mood, label (and the tone
    shown, when it was recorded), examples (and example_answers), finished. The flags are
    booleans; `why` holds what was matched, for the transcripts."""
    reply, message = row["reply"], row["message"]
    language = detect_language(message)
    examples = example_answers(row)
    restate = echo_share(reply, message) >= ECHO_SHARE
    mostly_user = mostly_user_share(reply, message) >= MOSTLY_USER_SHARE
    as_user = speaks_as_user(reply, message)
    from_chat = canned_span(reply, earlier_replies)
    from_example = canned_span(reply, examples)
    refused = refusal(reply)
    clashing = wrong_tone(reply, language, row.get("mood", ""))
    why = {key: value for key, value in (("canned_chat", from_chat),
                                         ("canned_example", from_example),
                                         ("refusal", refused),
                                         ("wrong_tone", "/".join(clashing)))
           if value}  # fmt: skip
    return {
        "echo": restate or mostly_user or as_user,
        "canned": from_chat is not None or from_example is not None,
        "refusal": refused is not None,
        "wrong_tone": bool(clashing),
        "language": detect_language(reply) == language,
        "restate": restate,
        "mostly_user": mostly_user,
        "as_user": as_user,
        "canned_chat": from_chat is not None,
        "canned_example": from_example is not None,
        "copy": copy_share(reply, [*earlier_replies, *row["examples"]]) >= COPY_SHARE,
        "finished": bool(row["finished"]),
        "tone": tone_fits(reply, language, row.get("tone") or row["label"]),
        "why": why,
    }


# The goals first (GOALS), then their parts, then the earlier measures.
GOAL_FLAGS = ("echo", "canned", "refusal", "wrong_tone", "language")
PART_FLAGS = ("restate", "mostly_user", "as_user", "canned_chat", "canned_example")
FLAGS = (*GOAL_FLAGS, *PART_FLAGS, "copy", "finished", "tone")
# (most, least) share allowed; the light tier's are the refusal and example-copy ones only.
GOALS: dict[str, tuple[float, float]] = {"echo": (0.05, 0.0), "canned": (0.05, 0.0),
                                         "refusal": (0.0, 0.0), "wrong_tone": (0.0, 0.0),
                                         "language": (1.0, 1.0)}  # fmt: skip
LIGHT_GOALS: dict[str, tuple[float, float]] = {"refusal": (0.0, 0.0),
                                               "canned_example": (0.0, 0.0)}  # fmt: skip


def meets(figures: dict[str, Any], goals: dict[str, tuple[float, float]]) -> list[str]:
    """The goals a group's figures miss (their names), none when all are met."""
    missed = []
    for flag, (most, least) in goals.items():
        value = figures.get(flag)
        if value is None or not least - 1e-9 <= value <= most + 1e-9:
            missed.append(flag)
    return missed


def add_flags(rows: Sequence[dict[str, Any]]) -> None:
    """Flag every answered row, in chat order (a copy is judged against earlier replies)."""
    earlier: dict[str, list[str]] = {}
    for row in rows:
        if row.get("reply") is not None:
            replies = earlier.setdefault(row["chat"], [])
            row["flags"] = flag_reply(row, replies)
            replies.append(row["reply"])


def quality(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Shares of each flag, distinct-2 and lengths over rows that carry `flags`."""
    answered = [r for r in rows if r.get("reply") is not None]
    out: dict[str, Any] = {"n": len(answered), "failed": len(rows) - len(answered)}
    for flag in FLAGS:
        out[flag] = mean([float(r["flags"][flag]) for r in answered])
        out[f"{flag}_n"] = sum(bool(r["flags"][flag]) for r in answered)
    out["distinct2"] = distinct_n([r["reply"] for r in answered])
    out["chars"] = mean([len(r["reply"]) for r in answered])
    out["tokens"] = mean([r["tokens"] for r in answered if r.get("tokens") is not None])
    sizes = [r for r in answered if r.get("prompt_tokens") is not None]
    out["prompt_first"] = mean([r["prompt_tokens"] for r in sizes if r["turn"] == 1])
    out["prompt_mean"] = mean([r["prompt_tokens"] for r in sizes])
    moods = [r for r in answered if r.get("mood") in ("positive", "negative") and "label" in r]
    out["label_ok"] = mean([float(r["label"] == r["mood"]) for r in moods])
    return out


def speed(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Label and first-token p50 of first messages against later ones, in seconds, and the
    decode speed (tokens after the first over the time after the first)."""
    decoded = [r for r in rows if r.get("total_s") is not None and r.get("tokens")]
    decode_s = sum(r["total_s"] - r["first_token_s"] for r in decoded)
    out: dict[str, Any] = {
        "decode_tps": sum(r["tokens"] - 1 for r in decoded) / decode_s if decode_s > 0 else None
    }
    for key in ("label_s", "first_token_s"):
        first = [r[key] for r in rows if r["turn"] == 1 and r.get(key) is not None]
        later = [r[key] for r in rows if r["turn"] > 1 and r.get(key) is not None]
        p_first, p_later = percentile(first, 50), percentile(later, 50)
        out[f"{key}_first_p50"] = p_first
        out[f"{key}_later_p50"] = p_later
        out[f"{key}_ratio"] = p_later / p_first if p_first and p_later is not None else None
    return out


# --- running the chats --------------------------------------------------------------------


def _prompt_sizes(stream: Any) -> tuple[int | None, int | None]:
    """(prompt tokens, of which taken from a cache) of a real runner's fresh reply stream."""
    if hasattr(stream, "prompt_ids"):  # llama.cpp
        return len(stream.prompt_ids), stream.position
    if hasattr(stream, "pending") and hasattr(stream, "length"):  # transformers
        return stream.length + int(stream.pending.shape[1]), stream.length
    return None, None


async def run_dialogues(
    chats: Sequence[Dialogue],
    max_new_tokens: int | None,
    seed: int,
    after_chat: Callable[[list[dict[str, Any]], dict[str, Any]], object] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every chat through the service; `after_chat(rows so far, config)` is called after
    each chat (main saves the run so far, so a run stopped early keeps its finished chats)."""
    from benchmarks.common import bench_service, runner_factory
    from engine.model.worker import ModelWorker
    from engine.types import IncomingMessage, ReplyDone, ReplyFailed, SentimentTagged, TextDelta

    settings = bench_settings(max_new_tokens=max_new_tokens, seed=seed)
    load = runner_factory(settings)
    started: list[dict[str, Any]] = []  # what each reply was asked, in order

    def factory() -> Any:
        runner = load()
        start_reply = runner.start_reply

        def recording(request: Any) -> Any:
            stream = start_reply(request)
            prompt_tokens, cached_tokens = _prompt_sizes(stream)
            started.append({"request": request, "stream": stream, "prompt_tokens": prompt_tokens,
                            "cached_tokens": cached_tokens})  # fmt: skip
            return stream

        runner.start_reply = recording  # type: ignore[method-assign]
        return runner

    rows: list[dict[str, Any]] = []
    limits = settings.worker.model_copy(update={"request_timeout_s": 1800.0})
    worker = ModelWorker(factory, limits)
    async with bench_service("dialogue", worker, settings.chat) as service:
        for number, chat in enumerate(chats, start=1):
            for turn, (text, mood) in enumerate(chat.turns, start=1):
                row: dict[str, Any] = {"chat": chat.name, "split": chat.split, "turn": turn,
                                       "language": chat.language, "message": text,
                                       "mood": mood, "reply": None}  # fmt: skip
                before = len(started)
                start = time.perf_counter()
                message = IncomingMessage("bench", chat.name, chat.name, text)
                async for event in service.handle(message):
                    if isinstance(event, SentimentTagged):
                        row.update(
                            label=event.sentiment.label,
                            tone=event.sentiment.tone,
                            p_positive=round(event.sentiment.p_positive, 4),
                        )
                    elif isinstance(event, TextDelta) and "first_delta_s" not in row:
                        row["first_delta_s"] = time.perf_counter() - start
                    elif isinstance(event, ReplyDone):
                        timings = event.timings
                        row.update(reply=event.text, finished=event.finished,
                                   label_s=timings.sentiment_ms / 1000,
                                   first_token_s=(timings.first_token_ms or 0) / 1000,
                                   total_s=timings.total_ms / 1000)  # fmt: skip
                    elif isinstance(event, ReplyFailed):
                        row["failure"] = event.reason
                if len(started) > before:
                    asked = started[before]
                    request = asked["request"]
                    row.update(
                        examples=[t.content for t in request.examples],
                        example_answers=[
                            t.content for t in request.examples if t.role == "assistant"
                        ],
                        history_turns=len(request.history),
                        prompt_tokens=asked["prompt_tokens"],
                        cached_tokens=asked["cached_tokens"],
                        tokens=len(getattr(asked["stream"], "generated", [])),
                    )
                rows.append(row)
            print(f"  {number}/{len(chats)} {chat.name}", file=sys.stderr, flush=True)
            if after_chat is not None:
                config = run_config(settings, worker.runner.name)
                after_chat(flagged_copy(rows), config)
        backend = worker.runner.name
    add_flags(rows)
    return rows, run_config(settings, backend)


def interleaved(chats: Sequence[Dialogue]) -> list[Dialogue]:
    """The chats alternating Chinese and English, each language in its order."""
    zh = [c for c in chats if c.language == "zh"]
    en = [c for c in chats if c.language != "zh"]
    out: list[Dialogue] = []
    for pair in zip(zh, en, strict=False):
        out += pair
    return out + zh[len(en) :] + en[len(zh) :]


def run_config(settings: Any, backend: str) -> dict[str, Any]:
    layout = settings.chat.layout
    return {"runner": backend, "generation": settings.chat.generation.__dict__,
            "history_turns": settings.chat.history_turns,
            "history_step": settings.chat.history_step,
            "history_max_tokens": settings.model.history_max_tokens,
            "reply_tone_at": layout.tone_at, "reply_examples": layout.examples}  # fmt: skip


def flagged_copy(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    copied = [dict(row) for row in rows]
    add_flags(copied)
    return copied


# --- reporting ----------------------------------------------------------------------------


def groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"all": list(rows)}
    for split in SPLITS:
        for language in ("zh", "en"):
            chosen = [r for r in rows if r["split"] == split and r["language"] == language]
            if chosen:
                out[f"{split}-{language}"] = chosen
        chosen = [r for r in rows if r["split"] == split]
        if chosen:
            out[split] = chosen
    return out


QUALITY_COLUMNS = ["n", *FLAGS, "distinct2", "chars", "tokens", "prompt_first", "prompt_mean",
                   "label_ok"]  # fmt: skip
SPEED_COLUMNS = ["label_s_first_p50", "label_s_later_p50", "label_s_ratio",
                 "first_token_s_first_p50", "first_token_s_later_p50",
                 "first_token_s_ratio", "decode_tps"]  # fmt: skip


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {**quality(chosen), **speed(chosen)} for name, chosen in groups(rows).items()}


def _mark(row: dict[str, Any]) -> str:
    flags = row.get("flags")
    if not flags:
        return f"**failed: {row.get('failure')}**"
    why = flags.get("why", {})
    bad = [name for name in ("restate", "mostly_user", "as_user") if flags[name]]
    bad += [f"{name} «{why[name]}»" for name in ("canned_chat", "canned_example", "refusal",
                                                  "wrong_tone") if flags[name]]  # fmt: skip
    bad += ["copy"] if flags["copy"] else []
    bad += [f"not {name}" for name in ("language", "finished", "tone") if not flags[name]]
    found = tone_markers(row["reply"], row["language"])
    words = ", ".join(f"{group}: {'/'.join(hits)}" for group, hits in found.items() if hits)
    return ("**" + ", ".join(bad) + "**" if bad else "ok") + (f" ({words})" if words else "")


def transcripts(rows: Sequence[dict[str, Any]], title: str) -> str:
    lines = [f"# benchmarks.quality.dialogue: {title}", ""]
    chat = None
    for row in rows:
        if row["chat"] != chat:
            chat = row["chat"]
            lines += [f"## {chat} ({row['language']}, {row['split']})", ""]
        label = row.get("label", "?")
        shown = f", shown {row['tone']}" if row.get("tone") not in (None, label) else ""
        p = row.get("p_positive")
        timing = (f"label {row['label_s']:.2f} s, first token {row['first_token_s']:.2f} s, "
                  f"prompt {row.get('prompt_tokens')} tokens ({row.get('cached_tokens')} cached)"
                  if row.get("label_s") is not None else "")  # fmt: skip
        score = f" {p:.2f}" if p is not None else ""
        lines.append(f"**{row['turn']}. user** ({row['mood']}; labelled {label}{score}"
                     f"{shown}): {row['message']}  ")  # fmt: skip
        lines.append(f"**bot**: {row['reply'] if row['reply'] is not None else '–'}  ")
        lines += [f"<sub>{_mark(row)}; {timing}</sub>", ""]
    return "\n".join(lines) + "\n"


def _share(figures: dict[str, Any], flag: str) -> str:
    value = figures.get(flag)
    return "–" if value is None else f"{value:.2f} ({figures[f'{flag}_n']})"


GOAL_COLUMNS = [*GOAL_FLAGS, "canned_example", "prompt_first", "prompt_mean"]


def goal_table(results: dict[str, dict[str, Any]], label: str = "group") -> str:
    """Per group: the goal measures as share (count), the prompt sizes, and which goals
    (default model; light tier) it misses."""
    rows: list[list[object]] = []
    for name, r in results.items():
        missed = meets(r, GOALS)
        light = meets(r, LIGHT_GOALS)
        rows.append([name, r["n"], *(_share(r, f) for f in [*GOAL_FLAGS, "canned_example"]),
                     r["prompt_first"], r["prompt_mean"],
                     "all" if not missed else "missed " + "/".join(missed),
                     "met" if not light else "missed " + "/".join(light)])  # fmt: skip
    goals = ["≤ 0.05", "≤ 0.05", "0", "0", "1.00", "0 (light tier)", "", ""]
    return table([label, "n", *GOAL_COLUMNS, "goals (default)", "goals (light)"],
                 [*rows, ["goal", "", *goals, "", ""]], digits=0)  # fmt: skip


def print_summary(results: dict[str, dict[str, Any]]) -> None:
    print(goal_table(results))
    print()
    print(table(["group", *QUALITY_COLUMNS], [[name, *(r[k] for k in QUALITY_COLUMNS)]
                                             for name, r in results.items()]))  # fmt: skip
    print()
    print(table(["group", *SPEED_COLUMNS], [[name, *(r[k] for k in SPEED_COLUMNS)]
                                           for name, r in results.items()]))  # fmt: skip


def compare_goals(folders: Sequence[str], groups_wanted: Sequence[str]) -> str:
    """The goal table of saved runs, one row per run and group, judged by today's metrics."""
    results: dict[str, dict[str, Any]] = {}
    for folder in folders:
        data = json.loads((Path(folder) / "results.json").read_text())
        add_flags(data["rows"])
        figures = summary(data["rows"])
        for group in groups_wanted:
            if group in figures:
                results[f"{Path(folder).name} {group}"] = figures[group]
    return goal_table(results, "run group")


def compare(folders: Sequence[str], group: str) -> str:
    rows = []
    for folder in folders:
        data = json.loads((Path(folder) / "results.json").read_text())
        add_flags(data["rows"])  # today's metrics, also for runs saved before a change
        figures = summary(data["rows"]).get(group)
        if figures is None:
            continue
        rows.append([Path(folder).name, *(figures[k] for k in [*QUALITY_COLUMNS, *SPEED_COLUMNS]),
                     data["machine"].get("load_avg_1m")])  # fmt: skip
    headers = ["run", *QUALITY_COLUMNS, "label first", "label later", "label ratio",
               "token first", "token later", "token ratio", "decode tok/s", "load"]  # fmt: skip
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality.dialogue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--name", default="dialogue", help="the run's name (its folder)")
    parser.add_argument(
        "--split", default="all", help="all, tune, report, holdout, or several: report,holdout"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interleave", action="store_true",
                        help="alternate Chinese and English chats, so a run stopped early "
                        "(each chat is saved as it ends) has both languages")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/dialogue/NAME")
    parser.add_argument("--compare", nargs="+", metavar="DIR", help="print saved runs")
    parser.add_argument("--group", default="report",
                        help="with --compare: all, tune, report, holdout, report-zh…; "
                        "several joined by commas print the goal table")  # fmt: skip
    args = parser.parse_args(argv)
    if args.compare:
        wanted = args.group.split(",")
        print(compare_goals(args.compare, wanted) if len(wanted) > 1 else
              compare(args.compare, args.group))  # fmt: skip
        return 0
    dialogues(args.split)  # an unknown split fails here, before the model loads

    started = time.time()
    folder = Path(args.out) if args.out else RESULTS_DIR / "dialogue" / args.name
    chats = dialogues(args.split)
    if args.interleave:
        chats = interleaved(chats)

    def save(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
        chats_done = len({row["chat"] for row in rows})
        complete = chats_done == len(chats) and len(rows) == sum(len(c.turns) for c in chats)
        machine = {**describe_machine(), "peak_rss_mb": peak_rss_mb()}
        data = {"name": args.name, "complete": complete, "chats_done": chats_done,
                "chats": len(chats), "machine": machine, "args": vars(args), "config": config,
                "summary": summary(rows), "rows": rows}  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
        )
        title = f"{args.name}, {config['runner']}"
        if not complete:
            title += f" (stopped early: {chats_done} of {len(chats)} chats)"
        (folder / "transcripts.md").write_text(transcripts(rows, title))
        return data

    rows, config = asyncio.run(
        run_dialogues(chats, args.max_new_tokens, args.seed, after_chat=save)
    )
    data = save(rows, config)
    print(f"{config['runner']}; seed {args.seed}; {len(rows)} messages in "
          f"{time.time() - started:.0f} s; load average (1 min) "
          f"{data['machine'].get('load_avg_1m')}")  # fmt: skip
    print_summary(data["summary"])
    print(f"\nwrote {folder}/results.json and transcripts.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
