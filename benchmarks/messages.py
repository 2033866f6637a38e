"""The fixed chat messages the latency, load and reply-quality benchmarks send.

Realistic short chat messages, half Chinese, half English, mixed moods. `mood` is the
sender's intended mood (written with the message, for reference; the benches do not score it).
"""

from __future__ import annotations

from typing import NamedTuple


class BenchMessage(NamedTuple):
    text: str
    language: str  # "zh" or "en"
    mood: str  # "positive" or "negative"


MESSAGES: tuple[BenchMessage, ...] = (
    BenchMessage("今天终于拿到驾照了，开心得想转圈！", "zh", "positive"),
    BenchMessage(
        "I can't sleep again, my mind keeps racing about tomorrow's exam.", "en", "negative"
    ),
    BenchMessage("加班到十一点，回家路上还下大雨，真的好累。", "zh", "negative"),
    BenchMessage("My sister just had a baby girl, I'm an aunt now!", "en", "positive"),
    BenchMessage("室友又把我的东西弄坏了，还一句道歉都没有。", "zh", "negative"),
    BenchMessage(
        "Finally fixed the bug that haunted me all week. Feels amazing.", "en", "positive"
    ),
    BenchMessage("周末和朋友去爬山，山顶的风景美极了。", "zh", "positive"),
    BenchMessage("My dog is sick and the vet bill is more than I can afford.", "en", "negative"),
    BenchMessage("面试被拒了，感觉自己什么都做不好。", "zh", "negative"),
    BenchMessage("Got a surprise bonus at work today, dinner is on me!", "en", "positive"),
    BenchMessage("妈妈做了我最爱吃的红烧肉，幸福感满满。", "zh", "positive"),
    BenchMessage("Nobody remembered my birthday this year.", "en", "negative"),
    BenchMessage("手机刚买一个月就坏了，客服还一直推脱。", "zh", "negative"),
    BenchMessage("I ran 10k without stopping for the first time!", "en", "positive"),
    BenchMessage("论文终于被录用了，三年的努力没有白费！", "zh", "positive"),
    BenchMessage(
        "My flight got cancelled and I'm stuck at the airport overnight.", "en", "negative"
    ),
    BenchMessage("最近总是一个人吃饭，有点孤单。", "zh", "negative"),
    BenchMessage(
        "We adopted a kitten today and she's already purring on my lap.", "en", "positive"
    ),
    BenchMessage("今天的演讲很成功，老板还当众表扬了我。", "zh", "positive"),
    BenchMessage("I think my best friend is avoiding me and I don't know why.", "en", "negative"),
)


def messages(count: int | None = None) -> list[BenchMessage]:
    """The first `count` messages (cycling through the list when more are asked for)."""
    count = len(MESSAGES) if count is None else count
    return [MESSAGES[i % len(MESSAGES)] for i in range(count)]
