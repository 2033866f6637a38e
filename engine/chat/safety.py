"""The safety net: a message about self-harm or suicide, or a hard stretch of days, gets a
caring reply and, after it, a short note with where to find help (SUPPORT_RESOURCES).

Logic only (no store, no model): engine/chat/service.py asks this module what to do and records it.

Explicit words (`crisis_words`). Patterns for self-harm and suicidal phrasings in Chinese and
English, written to spare the everyday idioms: Chinese uses 死 as an intensifier (累死了,
笑死我了, 想死你了 "missed you so much"), English kills and dies for coffee, traffic and
laughter. So the English patterns need a first-person object or a wish ("kill myself",
"want to die", "don't want to live"), and the Chinese ones a wish or an act (想死 but not
想死你了 or 累得想死, 自杀, 割腕, 不想活). A negation just before the match ("I would never
hurt myself", 我不会自杀) cancels it. Measured by `python -m benchmarks.quality.safety`
(docs/results/safety/): misses on crisis phrasings, false alarms on everyday negatives and
review rows. A word list is a net, not a judge: it never decides anything but whether a note
follows.

A hard stretch (`hard_stretch`). From the stored labels: of the user's last STRETCH_DAYS days
with messages (within STRETCH_LOOKBACK, in the user's TIMEZONE), at least STRETCH_HARD_DAYS
were hard, a hard day being one where most messages were strongly negative (labelled negative
with p_positive <= STRONG_NEGATIVE_P, or corrected to negative by the user; a correction to
positive or neutral never counts).

The reply. For a crisis message the reply prompt gets the negative tone whatever the label,
a gentle note after it (CRISIS_NOTE) and one example exchange (CRISIS_EXAMPLE); the reply is
checked before it is shown (`guarded_reply`): a refusal ("I can't help with that", 我不能接受
这样的情绪), a phone number (a small model may invent one), any word for means (the 0.5B
model once suggested a knife) or a reply without a single empathy phrase (the dismissive
"It's not okay to feel that way") is replaced by a caring template in the user's language
(CARING_REPLY). A negative message's reply is checked for refusals too.

The note (`support_note`). Its own message after the reply, never a diagnosis: it says the
user was heard and where people are who listen, with SUPPORT_RESOURCES or, when that is unset,
a neutral international pointer (findahelpline.com, the local emergency number).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal

from engine.chat.prompts import ReplyLayout, message_turns
from engine.language import Language, detect_language
from engine.types import MoodEvent, Turn

Trigger = Literal["words", "stretch"]

# --- explicit words -----------------------------------------------------------------------

# Each pattern with whether a negation just before it cancels it ("I'd never kill myself");
# the ones that are a negation themselves ("don't want to live", 不想活) are never cancelled.
_EN: tuple[tuple[str, bool], ...] = (
    (r"\bkill(?:ing)?\s+my\s*self\b", True),
    (r"\bkms\b", True),
    (
        r"\bsuicid(?:e|al)\b(?!\s+(?:prevention|squad|awareness|bomb(?:er|ing)?s?|rates?|note\s+of)\b)",
        True,
    ),
    (r"\b(?:end|ending|take|taking)\s+my\s+(?:own\s+)?life\b", True),
    (r"\bend(?:ing)?\s+it\s+all\b", True),
    (
        r"\b(?:want|wanna|going|gonna|plan(?:ning)?|ready)\s+to\s+end\s+(?:it|things|everything)\b"
        r"(?!\s+with\b)",
        True,
    ),
    (r"\b(?:i\s+)?(?:wants?|wanna|wish(?:\s+i\s+could)?|ready|deserve)\s+(?:to\s+)?die\b", True),
    (
        r"\bwant\s+(?:it\s+all|everything|all\s+of\s+it|my\s+life)\s+to\s+(?:be\s+over|end|stop)\b",
        True,
    ),
    (r"\b(?:can'?t|cannot|can)\s+stay\s+alive\b", False),
    (r"\bmy\s+own\s+funeral\b", True),
    (
        r"\btook\s+(?:a\s+bunch\s+of|all\s+(?:of\s+)?my|too\s+many|a\s+whole\s+bottle\s+of)\s+(?:\w+\s+)?pills\b",
        True,
    ),
    (r"\bwant\s+out\s+of\s+(?:this\s+)?life\b", True),
    (
        r"\b(?:happier|better(?:\s+off)?|easier)\s+(?:if|when)\s+i\s*(?:was|were|'m|am)\s+(?:gone|dead|not\s+(?:here|around))\b",
        True,
    ),
    (r"\buntil\s+(?:they|it)\s+bled\b|\bcut(?:ting)?\s+my\s+(?:arms|wrists|thighs|legs)\b", True),
    (r"\b(?:don'?t|do\s+not)\s+want\s+to\s+be\s+here\s+any\s*more\b", False),
    (
        r"\b(?:happier|better(?:\s+off)?|easier)\s+(?:if|when)\s+i\s+(?:just\s+)?(?:was|were)"
        r"(?:\s*n'?t|\s+not|\s+never)\s+(?:here|around)\b",
        False,
    ),
    (r"\b(?:been|keep|started)\s+burning\s+my\s*self\b|\bon\s+the\s+ledge\b", True),
    (
        r"\b(?:swallowed|took|taken|downed)\s+(?:a\s+)?(?:whole\s+)?(?:bottle|handful|box)\s+of\s+"
        r"(?:\w+\s+)?pills\b",
        True,
    ),
    (r"\bwish\s+(?:a|the)\s+(?:car|bus|truck|train)\s+would\s+hit\s+me\b", True),
    (r"\b(?:want|wanna|wish)\s+(?:to\s+)?(?:go\s+to\s+)?sleep\s+forever\b", True),
    (
        r"\b(?:wish\s+i\s+(?:were|was)|rather\s+be|want\s+to\s+be|wanna\s+be|better\s+off)\s+dead\b",
        True,
    ),
    (r"\b(?:don'?t|do\s+not|no\s+longer)\s+want\s+to\s+(?:be\s+alive|live|exist)\b", False),
    (r"\bwant\s+to\s+stop\s+(?:existing|living)\b", True),
    (r"\b(?:can'?t|cannot)\s+(?:go\s+on|keep(?:\s+on)?)\s+living\b", False),
    (r"\btired\s+of\s+(?:living|being\s+alive)\b", True),
    (
        r"\b(?:point|reason)\s+(?:in\s+|to\s+|of\s+)?(?:living|live|being\s+alive|keep(?:ing)?\s+living)\b(?!\s+in\b)",
        False,
    ),
    (r"\blife\s+(?:is\s*n'?t|is\s+not|not)\s+worth\s+(?:living|it)\b", True),
    (r"\bself[-\s]?harm", True),
    (r"\b(?:hurt|hurting|cut|cutting|harm|harming)\s+my\s*self\b", True),
    (r"\bslit\s+my\s+wrists?\b", True),
    (r"\bhang(?:ing)?\s+my\s*self\b", True),
    (r"\boverdos(?:e|ing)\b", True),
    (r"\b(?:take|taking|swallow(?:ing)?)\s+all\s+(?:of\s+)?my\s+pills\b", True),
    (r"\bbetter\s+(?:off\s+)?without\s+me\b", True),
    (r"\bnever\s+wake\s+up\b", True),
    (r"\b(?:don'?t|do\s+not)\s+want\s+to\s+wake\s+up\b", False),
    (r"\bdone\s+with\s+(?:life|living|being\s+alive)\b", True),
    (
        r"\b(?:care|notice|matter)\s+if\s+i\s+(?:died|was\s+dead|were\s+dead|was\s+gone|were\s+gone)\b",
        False,
    ),
    (r"\bwish\s+i\s*(?:'d|had)\s+never\s+been\s+born\b", True),
    (r"\bjump(?:ing)?\s+off\s+(?:the|a|this|my)\s+(?:bridge|roof|building|cliff|balcony)\b", True),
)
_EN_NEGATION = re.compile(
    r"\b(?:not|never|don'?t|do\s+not|won'?t|wouldn'?t|would\s+never|no)\s+(?:\w+\s+){0,2}$"
)

_ZH: tuple[tuple[str, bool], ...] = (
    (r"自[杀殺](?!式)", True),
    (r"自[残殘伤傷]|[伤傷]害了?自己|割腕|[划劃割]了?自己", True),
    (r"[轻輕]生", True),
    (r"不想[再继繼]?[续續]?活|活不下去|不配活|活[够夠]了|活下去\S{0,2}[太好很]?[难難]", False),
    (r"活[着著]\S{0,2}[没沒]有?(?:任何)?意[义義]|人生[没沒]有?(?:任何)?意[义義]", True),
    # 想死 is a wish, but 想死你了 ("missed you so much") and 累得想死 (an intensifier) are not.
    (r"(?<!得)想死(?![你我他她它妳您])", True),
    (r"(?<![你他她])去死(?!吧)", True),
    (
        r"死了算了|不如死了|死了就?解脱|一死了之|一了百了|(?:我|自己)死了\S{0,8}(?:好|解脱|轻松)",
        True,
    ),
    (r"永[远遠]睡[过過下]去|永[远遠]不\S?再?醒|(?:不要|别|再也不)再?醒[来過过]", True),
    (r"(?:吞|吃)了?\S{0,2}(?:一整瓶|整瓶|一瓶)\S{0,3}[药藥]", True),
    (r"想\S{0,2}怎么死(?!的)|活[着著]\S{0,3}(?:受罪|受苦|煎熬|痛苦)", True),
    (r"刀片|[让讓]自己[疼痛流血]", True),
    (r"想跳下去|要跳下去|天台\S{0,6}跳", True),
    (r"[结結]束(?:自己的?)?生命|[结結]束自己|[结結]束[这這]?一切|了[断斷]", True),
    (r"不想再?[待留活]在[这這]个世界|不想再?存在|[写寫]\S{0,2}[遗遺]言|[烫燙]自己", True),
    (r"我(?:不在了|走了|消失了)\S{0,10}(?:轻松|輕鬆|更好|会好|會好|解脱)", True),
    (r"站在\S{0,2}(?:楼顶|樓頂|天台|桥上|橋上)|(?:希望|想)\S{0,6}被\S{0,2}[车車]撞", True),
    (r"跳[楼樓河江]|[楼樓桥橋]\S{0,3}跳下|上吊|[遗遺][书書]", True),
    (r"准[备備]好?了?安眠[药藥]|[攒存囤]\S{0,4}[药藥]|吃[药藥]自|安眠[药藥]\S{0,4}[全都]吃", True),
    (r"[离離]开[这這]个世界|[从從][这這]个世界消失|没有我\S{0,6}(?:更好|会好)", True),
    (r"不想再?醒[来過过]", True),
)
_ZH_NEGATION = re.compile(r"(?:不|没|沒|别|別|不要|不会|不會|从不|從不|才不|绝不|絕不)\S?$")

_EN_PATTERNS = tuple((re.compile(p), n) for p, n in _EN)
_ZH_PATTERNS = tuple((re.compile(p), n) for p, n in _ZH)


def _normal(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", text)


def _fires(text: str, patterns: Iterable[tuple[re.Pattern[str], bool]], negation: re.Pattern[str],
           window: int) -> bool:  # fmt: skip
    for pattern, negatable in patterns:
        for match in pattern.finditer(text):
            before = text[max(0, match.start() - window) : match.start()]
            if negatable and negation.search(before):
                continue
            return True
    return False


def crisis_words(text: str) -> bool:
    """True when the message speaks of self-harm or suicide in the first person (either
    language's patterns: a Chinese message may say "kms", an English one 不想活)."""
    normal = _normal(text)
    # The Chinese patterns read text without spaces ("我 想 死" is 我想死).
    dense = re.sub(r"\s", "", normal)
    return _fires(normal, _EN_PATTERNS, _EN_NEGATION, 24) or _fires(
        dense, _ZH_PATTERNS, _ZH_NEGATION, 3
    )


# --- a hard stretch -----------------------------------------------------------------------

STRETCH_DAYS = 5  # the last days with messages looked at
STRETCH_HARD_DAYS = 4  # of which at least this many hard
STRETCH_LOOKBACK = timedelta(days=14)  # days further back do not count
STRONG_NEGATIVE_P = 0.2  # a label at least 80 % sure of negative
STRETCH_NOTE_EVERY = timedelta(days=7)  # at most one stretch note per user per this


def strongly_negative(event: MoodEvent) -> bool:
    if event.corrected is not None:
        return event.corrected == "negative"
    return event.label == "negative" and not event.neutral and event.p_positive <= STRONG_NEGATIVE_P


def hard_days(events: Iterable[MoodEvent], tz: tzinfo) -> dict[date, bool]:
    """Per local day with messages: whether most of its messages were strongly negative."""
    counts: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        day = event.created_at.astimezone(tz).date()
        counts[day][0] += strongly_negative(event)
        counts[day][1] += 1
    return {day: strong * 2 > total for day, (strong, total) in counts.items()}


def hard_stretch(events: Iterable[MoodEvent], now: datetime, tz: tzinfo) -> bool:
    """True when at least STRETCH_HARD_DAYS of the last STRETCH_DAYS days with messages
    (since now - STRETCH_LOOKBACK) were hard."""
    since = now - STRETCH_LOOKBACK
    days = hard_days((e for e in events if since <= e.created_at <= now), tz)
    latest = sorted(days, reverse=True)[:STRETCH_DAYS]
    return sum(days[day] for day in latest) >= STRETCH_HARD_DAYS


# --- the reply ----------------------------------------------------------------------------

# In place of the label's tone line in the reply prompt, for a crisis message.
CRISIS_NOTE: dict[Language, str] = {
    "zh": "对方正在经历非常痛苦的时刻：温柔地回应，先认真倾听和共情，告诉对方你在这里陪着，"
    "问问对方愿不愿意多说一些。不要拒绝，不要说教，不要下诊断，不要写电话号码。",
    "en": "They are going through something very painful: answer gently, listen and show you "
    "care, say you are here with them, and ask if they want to tell you more. Do not refuse, "
    "lecture or diagnose, and do not write phone numbers.",
}

# One example exchange, after the usual ones: the small model imitates an example far better
# than it obeys an instruction (engine/chat/prompts.py), and without one the 0.5B model refused.
CRISIS_EXAMPLE: dict[Language, tuple[str, str]] = {
    "zh": (
        "一切都没有希望了，我不想再这样下去了。",
        "听到你这么说，我真的很心疼，谢谢你愿意告诉我。你不是一个人，我在这里陪着你。"
        "愿意和我说说最近发生了什么吗？",
    ),
    "en": (
        "Everything feels hopeless and I can't go on like this.",
        "I'm so sorry you're carrying this much pain, and I'm really glad you told me. You're "
        "not alone, I'm here with you. Can you tell me a little about what's been happening?",
    ),
}


def crisis_examples(user_text: str, layout: ReplyLayout) -> tuple[Turn, ...]:
    """CRISIS_EXAMPLE in the user's language, its message shown as the layout shows one."""
    language = detect_language(user_text)
    question, answer = CRISIS_EXAMPLE[language]
    return (*message_turns(question, "negative", layout), Turn("assistant", answer))


# What a refused (or phone-numbered) reply to a crisis message is replaced with.
CARING_REPLY: dict[Language, str] = {
    "zh": "听到你这么说，我很心疼，谢谢你愿意告诉我。你很重要，你不必一个人扛着这些。"
    "我在这里陪着你——愿意和我说说，是什么让你这么难受吗？",
    "en": "I'm really sorry you're hurting this much, and I'm glad you told me. You matter, "
    "and you don't have to carry this alone. I'm here with you — would you like to tell me "
    "what's been weighing on you?",
}
# … and a refused reply to an ordinary negative message.
GENTLE_REPLY: dict[Language, str] = {
    "zh": "听起来真的很不好受，辛苦你了。我在这里听你说，愿意多讲一些吗？",
    "en": "That sounds really hard, and I'm sorry you're going through it. I'm here and "
    "listening — do you want to tell me more?",
}

_REFUSAL = re.compile(
    r"(?:\b(?:i|i'm|i am)\b[^.!?\n]{0,40}\b(?:can'?t|cannot|can\s+not|unable\s+to|not\s+able\s+to"
    r"|won'?t\s+be\s+able\s+to)\s+(?:help|assist|provide|offer|support|engage|continue|discuss"
    r"|respond|comply|talk\s+about)\b"
    r"|\bas\s+an\s+ai\b"
    r"|我(?:不能|无法|無法|没办法|沒辦法|不可以)(?:帮|幫|协助|協助|提供|接受|回答|处理|處理|讨论|討論|参与|參與|支持|继续|繼續|满足|滿足)"
    r"|(?:抱歉|对不起|對不起)[^。！？\n]{0,12}(?:不能|无法|無法)"
    r"|作为(?:一个)?(?:AI|ai|人工智能))"
)
# Means or methods in a reply to a crisis message. The 0.5B model once answered "I want to
# kill myself" with "you can try to kill yourself by using a knife" (benchmarks.quality.safety
# --replies): a caring reply needs none of these words, so any of them sends the template instead.
_MEANS = re.compile(
    r"\b(?:kill(?:ing)?\s+(?:your|my)\s*self|suicid\w*|overdos\w*|knife|knives|blades?|razors?"
    r"|ropes?|pills?|poison\w*|(?:hang|cut|hurt|harm)(?:ing)?\s+(?:your|my)\s*self|jump(?:ing)?"
    r"\s+off|bleach|guns?|wrists?|methods?\s+to)\b"
    r"|自[杀殺]|割腕|刀|[绳繩]|[药藥]|跳[楼樓河]|上吊|安眠|[煤燃]气|[烧燒]炭|去死|死法"
)
# A reply to a crisis message is shown only when it reads as caring: it has one of these.
# Without one it was, in benchmarks.quality.safety --replies, dismissive ("It's not okay to feel
# that way", 这真是不现实, 自杀是不可行的) or off ("希望你早日康复"), so the template goes instead.
_CARING = re.compile(
    r"\b(?:sorry\s+(?:you|to\s+hear)|glad\s+you\s+(?:told|reached|shared)|here\s+(?:for|with)\s+you"
    r"|i'm\s+here|i\s+am\s+here|not\s+alone|listen(?:ing)?|hear\s+you|sounds\s+(?:really\s+)?"
    r"(?:hard|painful|heavy|overwhelming))\b"
    r"|心疼|抱歉|倾听|傾聽|陪[着著伴你]|我在[这這]里|不是一个人|不是一個人|[听聽]到你|辛苦了"
)
# Seven or more digits in a row, allowing separators: a model's invented hotline.
_PHONE = re.compile(r"(?:\+?\d[\d\s\-().]{5,}\d)")


def is_refusal(reply: str) -> bool:
    return _REFUSAL.search(_normal(reply)) is not None


def reads_caring(reply: str) -> bool:
    return _CARING.search(_normal(reply)) is not None


def names_means(reply: str) -> bool:
    return _MEANS.search(_normal(reply)) is not None


def has_phone_number(reply: str) -> bool:
    return any(sum(ch.isdigit() for ch in m.group(0)) >= 7 for m in _PHONE.finditer(reply))


def guarded_reply(reply: str, user_text: str, crisis: bool) -> str:
    """The reply as shown: a refusal replaced by a caring template in the user's language; and
    for a crisis message, also a reply that names means of self-harm, has a phone number the
    model wrote, or does not read as caring (no empathy phrase at all)."""
    unsafe = crisis and (has_phone_number(reply) or names_means(reply) or not reads_caring(reply))
    if is_refusal(reply) or unsafe:
        return (CARING_REPLY if crisis else GENTLE_REPLY)[detect_language(user_text)]
    return reply


# --- the note -----------------------------------------------------------------------------

DEFAULT_RESOURCES: dict[Language, str] = {
    "zh": "如果你有立即的危险，请拨打当地的紧急电话。"
    "在 https://findahelpline.com 可以找到你所在国家或地区免费、保密的倾诉热线。",
    "en": "If you are in immediate danger, please call your local emergency number. Free, "
    "confidential helplines for your country are listed at https://findahelpline.com",
}

_NOTE_OPENING: dict[Trigger, dict[Language, str]] = {
    "words": {
        "zh": "💛 谢谢你告诉我这些。你不必独自承受——和信任的人或专业的倾听者聊一聊会有帮助，"
        "如果需要，现在就可以。",
        "en": "💛 Thank you for telling me. You don't have to go through this alone — talking "
        "with someone you trust or a trained listener can help, right now if you need it.",
    },
    "stretch": {
        "zh": "💛 这几天好像都挺不容易的。如果想找人聊聊，有人随时愿意倾听。",
        "en": "💛 The last few days seem to have been heavy. If it would help to talk with "
        "someone, there are people ready to listen.",
    },
}


def support_note(trigger: Trigger, user_text: str, resources: str = "") -> str:
    """The note after the reply, in the user's language; `resources` is SUPPORT_RESOURCES
    ("" for the built-in international pointer)."""
    language = detect_language(user_text)
    where = resources.strip() or DEFAULT_RESOURCES[language]
    return f"{_NOTE_OPENING[trigger][language]}\n{where}"
