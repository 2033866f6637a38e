"""split_text and ReplyRenderer (adapters/base.py) against an in-memory message sink."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from adapters import streaming
from adapters.streaming import (
    Messages,
    RateLimited,
    RenderLimits,
    ReplyRenderer,
    Transient,
    split_text,
)
from engine.chat import texts
from engine.types import (
    AlreadyHandled,
    MessageKey,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    Sentiment,
    SentimentTagged,
    TextDelta,
    Timings,
)

HAPPY = Sentiment("positive", 0.9)
LABEL = texts.label_line(HAPPY)
TIMINGS = Timings(1.0, 2.0, 3.0)


# --- split_text -----------------------------------------------------------------------------


def squeeze(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("limit", [5, 10, 37, 100])
def test_split_text_respects_the_limit_and_loses_nothing(limit: int) -> None:
    rng = random.Random(limit)
    pieces = ["word", "longerword", " ", " ", "\n", "中文字", "x" * 23, "!", "  \n"]
    for _ in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))).strip()
        chunks = split_text(text, limit)
        assert chunks
        assert all(len(chunk) <= limit for chunk in chunks)
        assert squeeze("".join(chunks)) == squeeze(text)
        assert all(chunk == chunk.strip() for chunk in chunks)
        if text:
            assert all(chunks)


def test_split_text_short_text_is_one_chunk() -> None:
    assert split_text("hello", 10) == ["hello"]
    assert split_text("x" * 10, 10) == ["x" * 10]
    assert split_text("", 10) == [""]


def test_split_text_prefers_a_newline_then_a_space() -> None:
    text = "first line\nsecond part continues here"
    assert split_text(text, 20) == ["first line", "second part", "continues here"]
    words = "alpha beta gamma delta epsilon"
    assert split_text(words, 12) == ["alpha beta", "gamma delta", "epsilon"]


def test_split_text_hard_cuts_when_there_is_no_break() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_text("中" * 7, 3) == ["中" * 3, "中" * 3, "中"]


def test_split_text_ignores_a_break_in_the_first_half() -> None:
    # Cutting at that space would make a tiny chunk: it cuts at the limit instead.
    assert split_text("a " + "b" * 30, 10) == ["a " + "b" * 8, "b" * 10, "b" * 10, "b" * 2]


# --- the renderer ---------------------------------------------------------------------------


@dataclass
class FakeSink:
    """Messages are ints; records every call and raises RateLimited when told to."""

    messages: list[str] = field(default_factory=list)
    calls: list[tuple[str, int, str]] = field(default_factory=list)
    edit_failures: list[float] = field(default_factory=list)  # retry_after for each next edit
    fail_edits_of: str | None = None  # only rate-limit edits whose text is exactly this
    typings: int = 0
    keyed_sends: bool = True

    async def send(self, text: str, key: str | None = None) -> int:
        self.calls.append(("send", len(self.messages), text))
        self.messages.append(text)
        return len(self.messages) - 1

    async def edit(self, handle: int, text: str) -> None:
        self.calls.append(("edit", handle, text))
        if self.edit_failures and (self.fail_edits_of is None or text == self.fail_edits_of):
            raise RateLimited(self.edit_failures.pop(0))
        self.messages[handle] = text

    async def delete(self, handle: int) -> None:
        self.calls.append(("delete", handle, ""))
        self.messages[handle] = "<deleted>"

    async def typing(self) -> None:
        self.typings += 1

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.calls]


async def stream(events: Iterable[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
    for event in events:
        yield event


def reply_events(words: list[str], finished: bool = True) -> list[ReplyEvent]:
    deltas: list[ReplyEvent] = [TextDelta(word) for word in words]
    text = "".join(words).strip()
    return [SentimentTagged(HAPPY, 1.0), *deltas, ReplyDone(text, HAPPY, TIMINGS, finished)]


WORDS = ["Hello ", "there, ", "this ", "is ", "a ", "streamed ", "reply."]
FULL = f"{LABEL}\n\nHello there, this is a streamed reply."


async def test_label_first_then_complete_final_text() -> None:
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=0.0))
    result = await renderer.render(stream(reply_events(WORDS)))

    assert sink.calls[0] == ("send", 0, LABEL)
    assert sink.messages == [FULL]
    assert result.text == FULL
    assert result.messages == 1
    assert result.failure is None
    assert set(sink.kinds()[1:]) == {"edit"}
    # Unthrottled, the message grew word by word and never shrank.
    shown = [text for kind, _, text in sink.calls if kind == "edit"]
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(shown))
    assert len(shown) >= len(WORDS)


async def test_edits_are_throttled() -> None:
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=3600.0))
    await renderer.render(stream(reply_events(WORDS)))
    assert sink.calls == [("send", 0, LABEL), ("edit", 0, FULL)]


async def test_final_edit_waits_out_a_rate_limit_and_retries() -> None:
    sink = FakeSink(edit_failures=[0.01, 0.02])
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=3600.0))
    result = await renderer.render(stream(reply_events(WORDS)))
    assert sink.calls == [("send", 0, LABEL)] + [("edit", 0, FULL)] * 3
    assert sink.messages == [FULL]
    assert result.text == FULL


async def test_final_edit_gives_up_after_max_retries() -> None:
    sink = FakeSink(edit_failures=[0.0] * 10)
    limits = RenderLimits(max_chars=4096, edit_interval_s=3600.0, max_retries=2)
    with pytest.raises(RateLimited):
        await ReplyRenderer(sink, limits).render(stream(reply_events(WORDS)))
    assert sink.kinds().count("edit") == 3  # the first try and two retries


async def test_rate_limited_intermediate_edit_is_skipped_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The renderer's clock stands still while the reply streams, then jumps to 0.05 s before
    # the 30 s window ends: the frames fall inside the window whatever the machine's load,
    # and the final edit waits the window out (0.05 s, not 30).
    clock = [1000.0]
    monkeypatch.setattr(streaming, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    async def window_nearly_over_at_the_end(events: list[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
        for event in events:
            if isinstance(event, ReplyDone):
                clock[0] += 30.0 - 0.05
            yield event

    first_frame = f"{LABEL}\n\nHello"
    sink = FakeSink(edit_failures=[30.0], fail_edits_of=first_frame)
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=0.0))
    result = await renderer.render(window_nearly_over_at_the_end(reply_events(WORDS)))

    edits = [text for kind, _, text in sink.calls if kind == "edit"]
    # The 429 on the first frame held back the other intermediate frames (its window is 30 s)
    # without sleeping, and the final text still went out in full.
    assert edits == [first_frame, FULL]
    assert sink.messages == [FULL]
    assert result.text == FULL


async def test_overflow_goes_into_new_messages() -> None:
    words = [f"word{i:02d} " for i in range(40)]
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=60, edit_interval_s=0.0))
    result = await renderer.render(stream(reply_events(words)))

    body = "".join(words).strip()
    assert result.messages == len(sink.messages) > 1
    assert all(len(message) <= 60 for message in sink.messages)
    assert sink.messages[0].startswith(LABEL)
    assert squeeze("".join(sink.messages)) == squeeze(f"{LABEL}{body}")
    assert sink.messages == split_text(f"{LABEL}\n\n{body}", 60)
    # Each message was sent once; later changes were edits of it.
    assert [handle for kind, handle, _ in sink.calls if kind == "send"] == list(
        range(len(sink.messages))
    )


async def test_overflow_with_throttling_still_delivers_everything() -> None:
    words = [f"word{i:02d} " for i in range(40)]
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=60, edit_interval_s=3600.0))
    result = await renderer.render(stream(reply_events(words)))
    assert sink.messages == split_text(f"{LABEL}\n\n{''.join(words).strip()}", 60)
    assert result.messages == len(sink.messages)


async def test_failure_after_some_text_shows_both() -> None:
    events: list[ReplyEvent] = [
        SentimentTagged(HAPPY, 1.0),
        TextDelta("Hello "),
        TextDelta("there"),
        ReplyFailed("model_error", texts.MODEL_ERROR, HAPPY),
    ]
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=3600.0))
    result = await renderer.render(stream(events))
    assert result.text == f"{LABEL}\n\nHello there\n\n{texts.MODEL_ERROR}"
    assert sink.messages == [result.text]
    assert result.failure == events[-1]


async def test_failure_without_a_label() -> None:
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096))
    failure = ReplyFailed("busy", texts.BUSY)
    result = await renderer.render(stream([failure]))
    assert sink.calls == [("send", 0, texts.BUSY)]
    assert result.text == texts.BUSY
    assert result.failure == failure


async def test_a_long_rate_limited_first_send_is_retried() -> None:
    class SlowStart(FakeSink):
        failures = 2

        async def send(self, text: str, key: str | None = None) -> int:
            if self.failures:
                self.failures -= 1
                self.calls.append(("send-429", -1, text))
                raise RateLimited(0.01)
            return await super().send(text, key)

    sink = SlowStart()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=3600.0))
    result = await renderer.render(stream(reply_events(WORDS)))
    assert sink.kinds() == ["send-429", "send-429", "send", "edit"]
    assert sink.messages == [FULL]
    assert result.text == FULL


async def test_a_message_handled_elsewhere_shows_nothing() -> None:
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=0.0))
    key = MessageKey("telegram", "1", "2")
    result = await renderer.render(stream([AlreadyHandled(key)]))
    assert [kind for kind in sink.kinds() if kind != "typing"] == []
    assert (result.text, result.messages, result.failure) == ("", 0, None)


async def test_a_failure_with_nothing_to_show_sends_nothing() -> None:
    # A message over the user's cap after they were told to slow down (engine/chat/service.py).
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=0.0))
    silent = ReplyFailed("slow_down", "")
    result = await renderer.render(stream([silent]))
    assert [kind for kind in sink.kinds() if kind != "typing"] == []
    assert (result.text, result.messages, result.failure) == ("", 0, silent)


# --- after a restart ------------------------------------------------------------------------


async def test_a_reply_begun_before_a_restart_is_completed_in_place() -> None:
    sink = FakeSink(messages=[f"{LABEL}\n\nHello th"])  # the frozen half answer
    limits = RenderLimits(max_chars=4096, edit_interval_s=3600.0)
    renderer = ReplyRenderer(sink, limits, existing=Messages((0,)))
    result = await renderer.render(stream(reply_events(WORDS)))
    assert sink.kinds() == ["edit", "edit"]  # the label (its text was unknown), then the rest
    assert sink.messages == [FULL]
    assert result.messages == 1


async def test_a_fresh_answer_carries_the_note_and_reports_its_first_message() -> None:
    sink = FakeSink()
    posted: list[Messages[int]] = []

    async def on_messages(messages: Messages[int]) -> None:
        posted.append(messages)

    renderer = ReplyRenderer(
        sink,
        # The label fits one message, the whole reply takes two: the first is reported once.
        RenderLimits(max_chars=len(f"{texts.RETRY_NOTE}\n{LABEL}") + 5, edit_interval_s=0.0),
        note=texts.RETRY_NOTE,
        on_messages=on_messages,
    )
    await renderer.render(stream(reply_events(WORDS)))
    assert sink.calls[0] == ("send", 0, f"{texts.RETRY_NOTE}\n{LABEL}")
    assert len(sink.messages) == 2
    # Each send recorded before (its key) and after (its message): every chunk's id.
    keys = [messages.sending for messages in posted]
    assert all(keys[0::2])
    assert keys[1::2] == [None, None]
    assert [messages.chunks for messages in posted] == [(), (0,), (0,), (0, 1)]


async def test_a_resumed_message_answered_elsewhere_shows_nothing() -> None:
    sink = FakeSink(messages=["frozen"])
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096), existing=Messages((0,)))
    await renderer.render(stream([AlreadyHandled(MessageKey("telegram", "1", "2"))]))
    assert sink.messages == ["frozen"]
    assert "edit" not in sink.kinds()


async def test_a_support_note_follows_the_reply_as_its_own_message() -> None:
    sink = FakeSink()
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=30, edit_interval_s=0.0))
    *events, last = reply_events(WORDS)
    assert isinstance(last, ReplyDone)
    done = ReplyDone(last.text, last.sentiment, last.timings, last.finished, support="💛 note")
    result = await renderer.render(stream([*events, done]))
    assert sink.messages[-1] == "💛 note"
    assert sink.calls[-1] == ("send", len(sink.messages) - 1, "💛 note")  # sent last, never edited
    assert "".join(sink.messages[:-1]).replace("\n", "").endswith("streamed reply.")
    assert result.messages == len(sink.messages) - 1  # the reply's own messages
    assert result.support == len(sink.messages) - 1


async def test_no_note_no_extra_message() -> None:
    sink = FakeSink()
    result = await ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=0.0)).render(
        stream(reply_events(WORDS))
    )
    assert sink.messages == [FULL]
    assert result.support is None


# --- transient faults, every message recorded, delivery -------------------------------------


@dataclass
class FlakySink(FakeSink):
    """Fails the next calls of a kind with Transient (a timeout, a 5xx, a reset)."""

    send_faults: int = 0
    edit_faults_of: dict[str, int] = field(default_factory=dict)  # text -> faults left
    keys: list[str | None] = field(default_factory=list)

    async def send(self, text: str, key: str | None = None) -> int:
        self.keys.append(key)
        if self.send_faults:
            self.send_faults -= 1
            self.calls.append(("send-fault", -1, text))
            raise Transient("502 Bad Gateway")
        return await super().send(text, key)

    async def edit(self, handle: int, text: str) -> None:
        if self.edit_faults_of.get(text):
            self.edit_faults_of[text] -= 1
            self.calls.append(("edit-fault", handle, text))
            raise Transient("timed out")
        await super().edit(handle, text)


FAST_BACKOFF = RenderLimits(max_chars=4096, edit_interval_s=0.0, backoff_s=0.001)


async def test_transient_faults_on_sends_and_the_final_edit_are_retried() -> None:
    sink = FlakySink(send_faults=2, edit_faults_of={FULL: 3})
    result = await ReplyRenderer(sink, FAST_BACKOFF).render(stream(reply_events(WORDS)))
    assert sink.messages == [FULL]
    assert result.text == FULL
    assert sink.kinds().count("send-fault") == 2
    assert sink.kinds().count("edit-fault") == 3
    assert len(set(sink.keys)) == 1  # the send repeated under one key (Discord's nonce)


async def test_a_transient_fault_on_an_intermediate_edit_skips_that_frame_only() -> None:
    first_frame = f"{LABEL}\n\nHello"
    sink = FlakySink(edit_faults_of={first_frame: 1})
    await ReplyRenderer(sink, FAST_BACKOFF).render(stream(reply_events(WORDS)))
    assert sink.messages == [FULL]


async def test_a_fault_that_persists_is_raised_after_the_retries() -> None:
    sink = FlakySink(edit_faults_of={FULL: 99})
    limits = RenderLimits(max_chars=4096, edit_interval_s=3600.0, backoff_s=0.001, max_retries=3)
    with pytest.raises(Transient):
        await ReplyRenderer(sink, limits).render(stream(reply_events(WORDS)))
    assert sink.kinds().count("edit-fault") == 4


LONG_WORDS = [f"word{i:03d} " for i in range(60)]  # ~480 characters: several 100-char chunks


async def test_every_chunk_of_a_long_reply_is_recorded_with_its_send() -> None:
    sink = FakeSink()
    recorded: list[Messages[int]] = []

    async def on_messages(messages: Messages[int]) -> None:
        recorded.append(messages)

    limits = RenderLimits(max_chars=100, edit_interval_s=0.0)
    renderer = ReplyRenderer(sink, limits, on_messages=on_messages)
    await renderer.render(stream(reply_events(LONG_WORDS)))
    assert len(sink.messages) >= 5
    assert recorded[-1] == Messages(tuple(range(len(sink.messages))))
    # Before each send its key, after it its message: never a message the record lacks.
    for before, after in itertools.pairwise(recorded):
        if before.sending is not None:
            assert after.chunks == (*before.chunks, len(after.chunks) - 1)


async def test_a_restart_edits_every_chunk_in_place_and_sends_nothing_new() -> None:
    limits = RenderLimits(max_chars=100, edit_interval_s=3600.0)
    whole = FakeSink()
    await ReplyRenderer(whole, limits).render(stream(reply_events(LONG_WORDS)))
    # The dead process had sent every chunk, the last ones cut short.
    frozen = [*whole.messages[:-2], "word0", "wo"]
    sink = FakeSink(messages=list(frozen))
    begun = Messages(tuple(range(len(frozen))))
    result = await ReplyRenderer(sink, limits, existing=begun).render(
        stream(reply_events(LONG_WORDS))
    )
    assert "send" not in sink.kinds()
    assert sink.messages == whole.messages
    assert result.messages == len(frozen)


async def test_a_send_under_way_at_a_restart_is_repeated_under_its_key() -> None:
    sink = FlakySink()
    begun: Messages[int] = Messages((), None, "nonce-1")
    await ReplyRenderer(sink, FAST_BACKOFF, existing=begun).render(stream(reply_events(WORDS)))
    assert sink.keys[0] == "nonce-1"
    assert sink.messages == [FULL]


async def test_delivered_after_the_whole_reply_or_failure_note_never_before_it() -> None:
    order: list[str] = []

    class Watching(FakeSink):
        async def send(self, text: str, key: str | None = None) -> int:
            order.append(f"send {text}")
            return await super().send(text, key)

        async def edit(self, handle: int, text: str) -> None:
            order.append(f"edit {text}")
            await super().edit(handle, text)

    async def delivered() -> None:
        order.append("delivered")

    *events, last = reply_events(WORDS)
    assert isinstance(last, ReplyDone)
    done = ReplyDone(last.text, last.sentiment, last.timings, last.finished, support="💛 note")
    limits = RenderLimits(max_chars=4096, edit_interval_s=3600.0)
    renderer = ReplyRenderer(Watching(), limits, on_delivered=delivered)
    await renderer.render(stream([*events, done]))
    assert order == [f"send {LABEL}", f"edit {FULL}", "send 💛 note", "delivered"]

    order.clear()
    failed: list[ReplyEvent] = [
        SentimentTagged(HAPPY, 1.0),
        ReplyFailed("timeout", texts.TIMEOUT, HAPPY),
    ]
    await ReplyRenderer(Watching(), limits, on_delivered=delivered).render(stream(failed))
    # The failure note answers the message: done only once it is on the platform.
    assert order == [f"send {LABEL}", f"edit {LABEL}\n\n{texts.TIMEOUT}", "delivered"]

    order.clear()
    unstored: list[ReplyEvent] = [ReplyFailed("storage_error", texts.STORAGE_ERROR, answers=False)]
    await ReplyRenderer(Watching(), limits, on_delivered=delivered).render(stream(unstored))
    assert order == [f"send {texts.STORAGE_ERROR}"]  # left to be tried again


async def test_a_support_note_sent_before_a_restart_is_not_sent_again() -> None:
    sink = FakeSink(messages=[f"{LABEL}\n\nHello", "💛 note"])
    *events, last = reply_events(WORDS)
    assert isinstance(last, ReplyDone)
    done = ReplyDone(last.text, last.sentiment, last.timings, last.finished, support="💛 note")
    limits = RenderLimits(max_chars=4096, edit_interval_s=3600.0)
    result = await ReplyRenderer(sink, limits, existing=Messages((0,), 1)).render(
        stream([*events, done])
    )
    assert "send" not in sink.kinds()
    assert sink.messages == [FULL, "💛 note"]
    assert result.support == 1


async def test_messages_a_restart_no_longer_needs_are_deleted() -> None:
    # The dead process had shown three messages of a longer reply; this answer needs one.
    sink = FakeSink(messages=[f"{LABEL}\n\nHello th", "x" * 90, "y" * 40])
    recorded: list[Messages[int]] = []

    async def on_messages(messages: Messages[int]) -> None:
        recorded.append(messages)

    limits = RenderLimits(max_chars=100, edit_interval_s=3600.0)
    renderer = ReplyRenderer(sink, limits, existing=Messages((0, 1, 2)), on_messages=on_messages)
    result = await renderer.render(stream(reply_events(WORDS)))
    assert sink.messages == [FULL, "<deleted>", "<deleted>"]
    assert result.messages == 1
    assert recorded[-1] == Messages((0,))  # recorded before the deletes


async def test_a_resumed_message_answered_elsewhere_deletes_nothing() -> None:
    sink = FakeSink(messages=["frozen", "frozen too"])
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096), existing=Messages((0, 1)))
    await renderer.render(stream([AlreadyHandled(MessageKey("telegram", "1", "2"))]))
    assert sink.messages == ["frozen", "frozen too"]


async def test_a_platform_without_keyed_sends_records_each_send_before_and_after_it() -> None:
    # Telegram: the key means nothing to the platform, but recorded before the send it tells
    # a restart that a message may exist whose id was never learnt.
    sink = FakeSink(keyed_sends=False)
    recorded: list[Messages[int]] = []

    async def on_messages(messages: Messages[int]) -> None:
        recorded.append(messages)

    limits = RenderLimits(max_chars=100, edit_interval_s=0.0)
    await ReplyRenderer(sink, limits, on_messages=on_messages).render(
        stream(reply_events(LONG_WORDS))
    )
    sends = len(sink.messages)
    assert [m.sending is not None for m in recorded] == [True, False] * sends
    assert [len(m.chunks) for m in recorded] == [n for k in range(sends) for n in (k, k + 1)]


DOUBT = "⚠️ a cut-off copy may show"


@pytest.mark.parametrize(
    ("keyed", "sending", "first"),
    [
        (False, "key-1", f"{texts.RETRY_NOTE}\n{DOUBT}\n{LABEL}"),  # Telegram, send under way
        (False, None, f"{texts.RETRY_NOTE}\n{LABEL}"),  # nothing was under way: no note
        (True, "key-1", f"{texts.RETRY_NOTE}\n{LABEL}"),  # Discord: the nonce finds it
    ],
)
async def test_a_send_under_way_at_a_restart_is_owned_up_to_where_it_cannot_be_found(
    keyed: bool, sending: str | None, first: str
) -> None:
    sink = FakeSink(keyed_sends=keyed)
    renderer = ReplyRenderer(sink, RenderLimits(max_chars=4096, edit_interval_s=3600.0),
                             existing=Messages((), None, sending), note=texts.RETRY_NOTE,
                             doubt=DOUBT)  # fmt: skip
    await renderer.render(stream(reply_events(WORDS)))
    assert sink.calls[0] == ("send", 0, first)
    # A repeated send is edited at once only where it may have returned an older message.
    assert [kind for kind, _, _ in sink.calls] == ["send", "edit", "edit"][
        : 3 if keyed and sending else 2
    ]
    assert sink.messages == [first.replace(LABEL, FULL)]


async def test_the_note_goes_above_messages_completed_in_place_when_a_send_was_under_way() -> None:
    # Killed while the second message of a long reply was on its way: the first is completed
    # in place and carries the note, the rest follows.
    sink = FakeSink(messages=[f"{LABEL}\n\nHello"], keyed_sends=False)
    limits = RenderLimits(max_chars=4096, edit_interval_s=3600.0)
    renderer = ReplyRenderer(sink, limits, existing=Messages((0,), None, "key-2"), doubt=DOUBT)
    await renderer.render(stream(reply_events(WORDS)))
    assert sink.messages == [f"{DOUBT}\n{FULL}"]


@pytest.mark.parametrize("keyed", [False, True])
async def test_a_send_retried_after_a_transient_fault_is_owned_up_to_where_unkeyed(
    keyed: bool,
) -> None:
    # Its first try may have been made and its answer lost; Discord's nonce would return that
    # message to the retry, Telegram makes a second one.
    sink = FlakySink(send_faults=1, keyed_sends=keyed)
    await ReplyRenderer(sink, FAST_BACKOFF, doubt=DOUBT).render(stream(reply_events(WORDS)))
    assert sink.messages == [FULL if keyed else f"{DOUBT}\n{FULL}"]
