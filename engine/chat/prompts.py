"""What the model is told for a reply: the persona, the tone per label and the examples.

Kept in one module so that tuning a prompt never means hunting through code. The label's own
prompt (the analyst frame) belongs to the runtime: engine/model/labelling.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.language import Language, detect_language
from engine.types import GenerationParams, ReplyRequest, Tone, Turn

# --- the reply: persona plus a tone chosen by the label ----------------------------------
# Two lessons from trying this on the 0.5B model: it follows a system prompt written in the
# user's own language far better than a bilingual one (a mixed prompt made it answer Chinese
# in English), and it imitates one example exchange much better than it obeys a long
# instruction (long tone instructions were echoed back verbatim). So each language has a
# short persona, a one-line tone per label, and one example exchange per tone.


# benchmarks.quality.dialogue (issue: conversations that hold up) showed what long chats do with
# that: the
# 0.5B restated the user, often as "I" ("室友晚上给我煮面确实挺暖心的…"), reused the positive
# example's closing sentence ("好好休息，为自己骄傲吧") in every reply of a chat, bad news
# included, and answered "Honestly I just want someone to listen." with "I'm sorry, but I
# can't help you with that." So: the persona is a friend (not an "assistant", which is what
# refuses), says who speaks ("you" for them, your own words), and asks for new wording each
# time; each example answer is tied to its own story (21 km, the boss, eggs and tomatoes) and
# never opens by restating the question, so there is no sentence in it that fits other news.
PERSONA: dict[Language, str] = {
    "zh": (
        "你是用户的好朋友，温暖、真诚，很会倾听。用中文回复，两到三句话，口语化。"
        "用“你”称呼对方，用自己的话回应：不要复述对方的原话，不要把对方的经历说成“我”的。"
        "每次换新的说法，不重复之前说过的句子。不要列清单，不要说“作为AI”之类的话；"
        "对方只想倾诉时，就陪着他、听他说。"
    ),
    "en": (
        "You are the user's warm, caring friend and a good listener. Reply in English in two "
        'or three natural sentences. Talk to them as "you", in your own words: do not repeat '
        'their message back, and never tell their story as if it were yours ("I"). Use fresh '
        "wording each time instead of reusing your earlier sentences. No lists, never say "
        'things like "as an AI", and if they just want to vent, stay and listen.'
    ),
}

TONES: dict[Language, dict[Tone, str]] = {
    "zh": {
        "negative": "对方心情低落：先体谅，再温柔安慰。",
        "positive": "对方很开心：和对方一起高兴，给予鼓励。",
        "neutral": "对方在闲聊或提问：友好、自然地回应，需要时简单回答。",
    },
    "en": {
        "negative": "They are feeling down: acknowledge it and comfort them gently.",
        "positive": "They are happy: share the joy and encourage them.",
        "neutral": "They are chatting or asking something: answer in a friendly, natural way.",
    },
}

EXAMPLES: dict[Language, dict[Tone, tuple[str, str]]] = {
    "zh": {
        "negative": (
            "今天被老板当众批评了，好委屈。",
            "当着同事的面挨说，脸上挂不住又委屈，太难受了。老板是因为哪件事发的火？",
        ),
        "positive": (
            "我终于跑完了人生第一个半马！",
            "二十一公里一步步跑下来，太厉害了，恭喜你！冲过终点线那一刻是什么感觉？",
        ),
        "neutral": (
            "我刚到家，在想晚饭做点什么。",
            "冰箱里有鸡蛋和番茄的话，番茄炒蛋十分钟就能上桌。你今天想吃清淡点还是重口一点？",
        ),
    },
    "en": {
        "negative": (
            "I failed my driving test again.",
            "Oh no, that's so disappointing after all those lessons. What tripped you up this "
            "time, the parking or the nerves?",
        ),
        "positive": (
            "I just got accepted into my dream school!",
            "No way, that's huge, congratulations! Which program did you get into, and who "
            "did you tell first?",
        ),
        "neutral": (
            "I just got home and I'm wondering what to cook.",
            "If there are eggs and a few vegetables around, an omelette takes ten minutes. "
            "Are you in the mood for something light or something filling?",
        ),
    },
}


# --- the layout: where the tone goes, which examples come first ----------------------------
# "note" puts the tone in a short system turn just before the user's message, and "user"
# appends it to the message itself, in brackets. Either way every earlier message keeps the
# tone it was answered with, so a conversation's prompt only ever grows at its end whatever
# the labels: the KV cache of the previous exchange serves the next message
# (engine/model/backends/llama_cpp.py). (A note after the message was tried: the 0.5B model then
# answered the note instead of the user, "The user is relieved. In your own words…".)
# "system" is the first layout: the tone line in the system prompt, above the history, so a
# change of tone starts the prompt afresh.
ToneAt = Literal["note", "user", "system"]
# "mixed": one exchange per tone (neutral included), in every prompt of a language (the
# opening is shared by every tone); "label": the one exchange of this message's tone (the
# first layout); "none".
ExampleSet = Literal["mixed", "label", "none"]
BRACKETS: dict[Language, tuple[str, str]] = {"zh": ("（", "）"), "en": ("(", ")")}


@dataclass(frozen=True)
class ReplyLayout:
    """Where the tone goes and which examples the prompt shows. The defaults are the bot's,
    measured with benchmarks.quality.dialogue (docs/conversations.md)."""

    tone_at: ToneAt = "note"
    examples: ExampleSet = "mixed"


# The original design's layout, which single-reply benchmarks still compare against.
FIRST_LAYOUT = ReplyLayout(tone_at="system", examples="label")


def reply_system_prompt(tone: Tone, user_text: str, layout: ReplyLayout = ReplyLayout()) -> str:
    language = detect_language(user_text)
    if layout.tone_at == "system":
        return f"{PERSONA[language]}\n{TONES[language][tone]}"
    return PERSONA[language]


def message_turns(text: str, tone: Tone | None, layout: ReplyLayout) -> tuple[Turn, ...]:
    """A user's message as the prompt shows it, with its tone where the layout puts it (none
    in the "system" layout, or when the tone is unknown)."""
    if tone is None or layout.tone_at == "system":
        return (Turn("user", text),)
    language = detect_language(text)
    line = TONES[language][tone]
    if layout.tone_at == "note":
        return (Turn("system", line), Turn("user", text))
    left, right = BRACKETS[language]
    return (Turn("user", f"{text}\n\n{left}{line}{right}"),)


def reply_examples(
    tone: Tone, user_text: str, layout: ReplyLayout = ReplyLayout()
) -> tuple[Turn, ...]:
    """The example exchanges placed before the real conversation."""
    examples = EXAMPLES[detect_language(user_text)]
    chosen = {"none": {}, "label": {tone: examples[tone]}, "mixed": examples}[layout.examples]
    return tuple(turn for shown, (question, answer) in chosen.items()
                 for turn in (*message_turns(question, shown, layout),
                              Turn("assistant", answer)))  # fmt: skip


def with_notes(history: tuple[Turn, ...], layout: ReplyLayout) -> tuple[Turn, ...]:
    """The stored turns as the prompt shows them: every earlier message with the tone it was
    answered in, as for a new message (when the store knows its tone)."""
    shown: list[Turn] = []
    for turn in history:
        if turn.role == "user":
            shown += message_turns(turn.content, turn.tone, layout)
        else:
            shown.append(Turn(turn.role, turn.content))
    return tuple(shown)


def reply_request(
    tone: Tone,
    user_text: str,
    history: tuple[Turn, ...],
    params: GenerationParams,
    layout: ReplyLayout = ReplyLayout(),
    extra: str = "",
    more_examples: tuple[Turn, ...] = (),
) -> ReplyRequest:
    """What the runner is asked for a message shown with this tone: persona, examples, the
    conversation so far and the tone, placed as `layout` says. `extra`: a line added after
    this message's tone, where the layout puts it, and `more_examples`: exchanges after the
    usual ones (engine/chat/safety.py's note and example for a crisis message); neither enters the
    history."""
    *note, message = message_turns(user_text, tone, layout)
    system = reply_system_prompt(tone, user_text, layout)
    user = message.content
    tone_note = note[0].content if note else ""
    if extra and layout.tone_at == "note":
        tone_note = f"{tone_note}\n{extra}"
    elif extra and layout.tone_at == "user":
        right = BRACKETS[detect_language(user_text)][1]
        user = f"{user[: -len(right)]} {extra}{right}"
    elif extra:
        system = f"{system}\n{extra}"
    return ReplyRequest(
        system=system,
        history=with_notes(history, layout),
        user_text=user,
        params=params,
        examples=reply_examples(tone, user_text, layout) + more_examples,
        note=tone_note,
    )


# --- the week's summary (/mood week, the weekly digest: engine/chat/week.py) ----------------------
# benchmarks.quality.week measured the first prompt (a key:value list of every number, two or three
# sentences asked for) on the 0.5B model: on the report weeks 30 % of summaries passed every
# check. It attached numbers to the wrong thing ("12 positive" for 12 messages), called hard
# weeks 非常积极 and good ones "overwhelmed", wrote about 今天, and invented feedback and work.
# So the numbers and days are now a sentence of our own (engine/chat/texts.py week_opening), and the
# model is given only the mood's direction in words (week_mood) and writes one sentence
# about that, after one example exchange about a week unlike most.

WEEK_SYSTEM: dict[Language, str] = {
    "zh": (
        "你是一个温暖的朋友。根据用户这周的心情，用中文对用户（用“你”）说一句温暖的话。"
        "只说心情和鼓励：不要写数字、日期或星期几，不要提工作、学习、天气或任何没有给出的事。"
    ),
    "en": (
        "You are a warm friend. From the user's mood this week, say one warm sentence to "
        'them in English, as "you". Do not write numbers, dates or weekdays, and do not '
        "guess what happened: speak only about the mood."
    ),
}
WEEK_EXAMPLE: dict[Language, tuple[str, str]] = {
    "zh": (
        "用户这周的心情：有起有落，和上周差不多。请对用户说一句话。",
        "这周有轻松的时候，也有沉重的时候，这些感受都很正常，照顾好自己。",
    ),
    "en": (
        "The user's mood this week: mixed, with ups and downs, about the same as the week before.",
        "This week had its light moments and its heavy ones, and both are okay to feel, so be "
        "gentle with yourself.",
    ),
}
# The model's, after the opening sentence. Its second sentence was where it went astray
# (benchmarks.quality.week, tune weeks: "Keep up the good work", "希望你今天…",
# "sleep and exercise").
WEEK_SENTENCES = 1
# Greedy: at temperature 0.3 the same tune week drew an invented 工作 in one sample of two
# and not the other; the DRY penalty keeps the example's wording out of the reply.
WEEK_PARAMS = GenerationParams(max_new_tokens=60, temperature=0.0, top_p=0.8, top_k=20,
                               dry_multiplier=0.8)  # fmt: skip


def week_request(mood: str, language: Language) -> ReplyRequest:
    """The request for the model's sentences about the week's mood (engine/chat/texts.py
    week_mood)."""
    question, answer = WEEK_EXAMPLE[language]
    return ReplyRequest(system=WEEK_SYSTEM[language], history=(), user_text=mood,
                        params=WEEK_PARAMS,
                        examples=(Turn("user", question), Turn("assistant", answer)))  # fmt: skip
