"""The one entry point adapters call: a message in, a stream of reply events out.

Per message: record it in the inbox with its text (a platform message seen before is
skipped; an adapter may have recorded it on arrival, with `receive`), take the user's turn,
make sure the message is still this process's to answer, tag the sentiment (shown at once),
build the reply prompt from the persona, the tone for that label and this chat's recent
turns, stream the reply, then store the mood event and both turns with the answer, in one
transaction; the message is done (its text and answer dropped) once the adapter has shown
the whole answer (`delivered`). One user's messages are handled strictly in order:
one at a time within a process by a lock per user, across processes by the store's
user_turn; and, holding both, a message waits (both let go) while an earlier message of the
user is unfinished anywhere, having a dead process's taken over first (watch_takeovers).

Crash-safe delivery: a message whose process died before it was done stays 'received'.
At start-up each adapter asks `unfinished(platform)` and passes each to `resume`, which
answers it exactly like `handle` once it holds the user's turn and the store agrees the
message is free (its owner gone: storage/presence.py); one whose answer was stored already
is shown again from the store, without the model. So each message gets one mood event
and one answer, whoever restarts and however often it is delivered again.

A flood from one user cannot starve the others: past USER_QUEUE_MAX messages waiting behind
the one being answered (in any process sharing the store: the inbox counts them), a message
is answered at once with "slow down" (done once the adapter has shown it).
Everyone else is unaffected because the lock also means a user has at most one job (a label
or a reply) at the model worker at a time, so one user's backlog never fills its queue. The
commands that use the model (/mood why, /mood week) take the same lock and count against
the same cap (`turn`): a flood of commands, or of commands and messages, is capped alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from engine.chat import mood, safety, texts
from engine.chat.config import ChatConfig
from engine.chat.input_text import clean, has_visible
from engine.chat.prompts import reply_request
from engine.chat.recent import RecentMessages
from engine.errors import ModelBusy, ModelStopped, ModelTimeout, StorageError
from engine.language import detect_language
from engine.ports import ModelFacade, MoodStore, ReplyTokens
from engine.types import (
    AlreadyHandled,
    IncomingMessage,
    MessageKey,
    MoodEvent,
    MoodReport,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    ReplyMessages,
    SentimentTagged,
    StoredReply,
    SupportTrigger,
    TextDelta,
    Timings,
    Tone,
    Turn,
    Unfinished,
    UserKey,
)

log = logging.getLogger(__name__)

# One message per language the prompts are written in (engine/chat/prompts.py PERSONA).
WARM_UP_SAMPLES = ("你好", "Hello")


# A message taken over from a dead process more often than this is answered with an apology
# instead: something in it may be what kills the process, and a bot must not crash-loop.
MAX_RESUMES = 2
# Unfinished messages older than this do not count against USER_QUEUE_MAX: whatever is
# left of them is a dead process's, which a restart finishes (adapters/resume.py).
WAITING_WINDOW = timedelta(minutes=10)
# How often a message waiting for the user's earlier ones (in other processes, or left by a
# dead one and being taken over) looks again whether they are done.
ORDER_POLL_S = 0.25
# How long an answer handed to the adapter may take to be shown in full (throttled edits,
# retries of a flaky platform) before this process treats it as failed here and retries it.
DELIVERY_GRACE_S = 120.0
# Chats quiet for longer are not read for messages sent while the bot was offline.
CATCH_UP_WINDOW = timedelta(days=7)
# Users told to slow down since one of their messages last got in, so that a burst gets one
# notice; forgotten all at once past this many (a flooder may then be told once more).
TOLD_MAX = 10_000


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 1)


class ChatService:
    def __init__(
        self,
        model: ModelFacade,
        store: MoodStore,
        config: ChatConfig | None = None,
        clock: type[datetime] = datetime,
    ) -> None:
        self.model = model
        self.store = store
        self.config = config or ChatConfig()
        self._clock = clock
        self._user_locks: dict[UserKey, _UserLock] = {}
        self._told_to_slow_down: set[UserKey] = set()
        # Recorded by `receive` in this process, not yet handed to `handle`: its own work.
        self._received: set[MessageKey] = set()
        # Being handled here (from `handle`/`resume` to their last event): this process's
        # inbox rows outside it failed here, and are retried (`unfinished`).
        self._in_hand: set[MessageKey] = set()
        # Answers stored and handed to the adapter, not yet shown in full (`delivered`): when
        # (monotonic). Not this process's failures to retry meanwhile, for DELIVERY_GRACE_S.
        self._awaiting_delivery: dict[MessageKey, float] = {}
        # Per platform, what to call when a user's earlier message waits for a take-over or a
        # retry (the adapter's Resumer sweeps at once).
        self._takeover_watchers: dict[str, Callable[[], None]] = {}
        # The latest message of each user, in memory only, for /mood why (engine/chat/recent.py).
        self.recent = RecentMessages()

    def _now(self) -> datetime:
        return self._clock.now(UTC)

    def now(self) -> datetime:
        """The service's clock (UTC), which tests can set."""
        return self._now()

    async def handle(
        self, message: IncomingMessage, *, confirm: bool = False
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Yield SentimentTagged, TextDelta…, then ReplyDone — or ReplyFailed as the last event,
        or only AlreadyHandled when this platform message was seen before.

        Consume the stream to the end (or close it): the user's ordering lock is held meanwhile.
        `confirm`: the caller calls `delivered` once the answer is shown in full; until then
        the message stays unfinished, its answer kept for a restart to show again. Without
        it the message is done with the stored exchange.
        """
        key = message.key
        if key is not None and key in self._received:
            # `receive` recorded it here: this call is its one answer (a copy of it, delivered
            # again, finds the key gone from the set and the row in the inbox).
            self._received.discard(key)
        elif key is not None:
            # The inbox makes a platform message count once, whoever sees it and however
            # often: a redelivered update, or the same update at two bot processes.
            try:
                first = await self.store.claim_message(key, message.user, self._now(),
                                                       self._kept(message))  # fmt: skip
            except StorageError as error:
                log.error("could not record the incoming message: %s", error)
                yield ReplyFailed("storage_error", texts.STORAGE_ERROR, answers=False)
                return
            if not first:
                log.info("message %s in %s chat %s was seen before: skipped",
                         key.message_id, key.platform, key.chat_id)  # fmt: skip
                yield AlreadyHandled(key)
                return
        # Every stage is closed with the caller's stream: an adapter that stops reading (at the
        # label, say) releases the user's turn and cancels the queued reply at once, not
        # whenever the abandoned inner generators happen to be collected.
        async with contextlib.aclosing(self._answer(message, confirm=confirm)) as events:
            async for event in events:
                yield event

    async def receive(self, messages: Sequence[IncomingMessage]) -> int:
        """Record messages in the inbox as they arrive, before the platform is told they did:
        for an adapter whose platform would not deliver them again once confirmed (Telegram).
        Each is then answered by passing it to `handle`, in this process; a message recorded
        before (a redelivery, another process's) is left for `handle` to skip.

        Returns how many were recorded. A database that cannot be written is logged and
        nothing more: `handle` tries again, and answers with the storage error if it fails."""
        recorded = 0
        for message in messages:
            key = message.key
            if key is None or key in self._received:
                continue
            try:
                first = await self.store.claim_message(key, message.user, self._now(),
                                                       self._kept(message))  # fmt: skip
            except StorageError as error:
                log.warning("could not record an incoming message on arrival: %s", error)
                return recorded
            if first:
                self._received.add(key)
                recorded += 1
        return recorded

    def _kept(self, message: IncomingMessage) -> IncomingMessage:
        # Kept as it will be answered (cleaned, cut): PostgreSQL refuses NUL in text.
        return replace(message, text=clean(message.text)[: self.config.max_input_chars])

    async def unfinished(self, platform: str) -> list[Unfinished]:
        """The platform's messages recorded but never answered by a process now gone, and this
        process's own that failed here (not older than WAITING_WINDOW: older ones are given
        up), oldest first: for the adapter to `resume` (adapters/resume.py)."""
        found = await self.store.unfinished(platform)
        since = self._now() - WAITING_WINDOW
        kept = []
        for item in found:
            if item.held_by == "here" and self._is_in_hand(item.key):
                continue
            if item.held_by == "here" and item.received_at < since:
                log.warning("message %s in %s chat %s failed here and is too old to retry: "
                            "given up", item.key.message_id, platform,
                            item.key.chat_id)  # fmt: skip
                await self._mark_done(item.key)
                continue
            kept.append(item)
        return kept

    def watch_takeovers(self, platform: str, wake: Callable[[], None]) -> None:
        """Have `wake` called when a message of the platform finds an earlier one of its user
        left by a dead process (or failed here): the adapter's Resumer sweeps at once."""
        self._takeover_watchers[platform] = wake

    def _handed_over(self, key: MessageKey) -> None:
        """The answer to `key` goes to the adapter to be shown (`delivered` ends it)."""
        now = time.monotonic()
        for old in [k for k, at in self._awaiting_delivery.items() if now - at > DELIVERY_GRACE_S]:
            del self._awaiting_delivery[old]  # their adapter tasks failed: retried as failures
        self._awaiting_delivery[key] = now

    def _is_in_hand(self, key: MessageKey) -> bool:
        handed = self._awaiting_delivery.get(key)
        if handed is not None and time.monotonic() - handed > DELIVERY_GRACE_S:
            # The adapter never said it was shown (its task failed): a failure to retry.
            del self._awaiting_delivery[key]
            handed = None
        return key in self._in_hand or key in self._received or handed is not None

    async def latest_messages(self, platform: str) -> list[MessageKey]:
        """Per chat heard from in the last CATCH_UP_WINDOW, the latest message recorded: an
        adapter whose platform does not redeliver what was sent while the bot was offline
        (Discord) reads each chat's history on from there. [] if the store cannot say."""
        try:
            return await self.store.latest_messages(platform, self._now() - CATCH_UP_WINDOW)
        except StorageError as error:
            log.warning("could not list the chats to catch up on: %s", error)
            return []

    async def resume(
        self, pending: Unfinished, *, confirm: bool = False
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Answer an unfinished message, as `handle` would have: the same events, or only
        AlreadyHandled when it is not this process's to answer (done meanwhile, or a live
        process has it). An answer stored before its process died is shown as it was."""
        log.info("resuming message %s in %s chat %s, received %s", pending.key.message_id,
                 pending.key.platform, pending.key.chat_id, pending.received_at)  # fmt: skip
        again = pending.held_by == "here"
        answer = self._answer(pending.message, confirm=confirm, resumed=True, again=again)
        async with contextlib.aclosing(answer) as events:
            async for event in events:
                yield event

    async def note_reply(self, key: MessageKey, messages: ReplyMessages) -> None:
        """The adapter's messages of the reply to `key` so far (and a send under way): a
        restart after a crash completes those messages rather than sending others."""
        try:
            await self.store.set_reply_messages(key, messages)
        except StorageError as error:
            # Only the tidiness of a retry depends on it: it would send a fresh answer.
            log.warning("could not note the reply messages: %s", error)

    async def delivered(self, key: MessageKey | None) -> None:
        """The adapter has shown the whole answer to `key` (ReplyDone), or the chat refused it
        (the user blocked the bot): the message is done. Until then a restart shows the
        stored answer again, so a process killed during its last edits leaves no cut-off
        reply behind."""
        if key is not None:
            self._awaiting_delivery.pop(key, None)
        await self._mark_done(key)

    async def _answer(
        self,
        message: IncomingMessage,
        *,
        confirm: bool,
        resumed: bool = False,
        again: bool = False,
    ) -> AsyncGenerator[ReplyEvent, None]:
        key = message.key
        if key is not None:
            self._in_hand.add(key)
        try:
            async with contextlib.aclosing(
                self._answer_in_turn(message, confirm, resumed, again)
            ) as events:
                async for event in events:
                    yield event
        finally:
            if key is not None:
                self._in_hand.discard(key)

    async def _answer_in_turn(
        self, message: IncomingMessage, confirm: bool, resumed: bool, again: bool
    ) -> AsyncGenerator[ReplyEvent, None]:
        key = message.key
        # Longer texts are cut (MAX_INPUT_CHARS): the answer covers the start of it.
        text = clean(message.text)[: self.config.max_input_chars]
        if not has_visible(text):
            await self._failed(key, confirm)
            yield ReplyFailed("empty", texts.EMPTY_MESSAGE)
            return
        entry = None
        if not await self._waiting_elsewhere(message):
            entry = self._join_queue(message.user, self.config.user_queue_max)
        if entry is None:
            # Answered rather than dropped, so it is done in the inbox too. The user is told
            # once per burst: fifty messages in ten seconds must not earn forty-five notices
            # (each one a platform message that counts against the chat's rate limit).
            told = message.user in self._told_to_slow_down
            if len(self._told_to_slow_down) >= TOLD_MAX:
                self._told_to_slow_down.clear()
            self._told_to_slow_down.add(message.user)
            log.info("%s user %s has too many messages waiting: %s",
                     message.platform, message.user_id,
                     "skipped" if told else "asked to slow down")  # fmt: skip
            await self._failed(key, confirm)
            yield ReplyFailed("slow_down", "" if told else texts.SLOW_DOWN)
            return
        while True:
            async with self._hold(message.user, entry), contextlib.AsyncExitStack() as turn:
                try:
                    # Other bot processes sharing the database wait for this user's turn too.
                    await turn.enter_async_context(self.store.user_turn(message.user))
                    # Holding the turn, nobody else is answering it now: is it still ours? (A
                    # restarting process may have taken it over; see storage/presence.py.)
                    taken = 0 if key is None else await self.store.take_message(key, again)
                    again = False  # counted once
                    earlier = [] if key is None or taken is None else await self._earlier(message)
                except StorageError as error:
                    log.error("could not take the user's turn: %s", error)
                    yield ReplyFailed("storage_error", texts.STORAGE_ERROR, answers=False)
                    return
                if taken is None:
                    assert key is not None
                    log.info("message %s in %s chat %s is answered elsewhere: skipped",
                             key.message_id, key.platform, key.chat_id)  # fmt: skip
                    yield AlreadyHandled(key)
                    return
                if not earlier:
                    if resumed and key is not None:
                        stored = await self._stored_reply(key)
                        if stored is not None:
                            # Stored before the process died (or failed here), perhaps not
                            # all shown: shown again as it was, and nothing stored twice.
                            log.info("message %s in %s chat %s: showing its stored answer",
                                     key.message_id, key.platform, key.chat_id)  # fmt: skip
                            if confirm:
                                self._handed_over(key)
                            yield SentimentTagged(stored.sentiment, 0.0)
                            if stored.failure is not None:
                                yield ReplyFailed(stored.failure, stored.text, stored.sentiment)
                                return
                            yield ReplyDone(stored.text, stored.sentiment, Timings(0.0, None, 0.0),
                                            True, stored.support)  # fmt: skip
                            return
                    if taken > MAX_RESUMES:
                        log.warning("message %s in %s chat %s was tried %d times: given up",
                                    key and key.message_id, message.platform,
                                    message.chat_id, taken)  # fmt: skip
                        await self._failed(key, confirm)
                        yield ReplyFailed("model_error", texts.MODEL_ERROR)
                        return
                    async with contextlib.aclosing(
                        self._handle_in_order(message, text, confirm)
                    ) as events:
                        async for event in events:
                            yield event
                    return
            # The user's earlier messages come first, wherever they are: with both locks let
            # go (one of them may be taken over by this very process), look again shortly.
            if any(item.held_by == "gone" or item.held_by == "here" for item in earlier):
                wake = self._takeover_watchers.get(message.platform)
                if wake is not None:
                    wake()
            await asyncio.sleep(ORDER_POLL_S)
            entry = self._join_queue(message.user)
            assert entry is not None  # no limit was given

    async def _earlier(self, message: IncomingMessage) -> list[Unfinished]:
        """The user's earlier messages still unfinished that this one must wait for: not
        those of this process that failed here longer ago than WAITING_WINDOW (given up)."""
        assert message.key is not None
        since = self._now() - WAITING_WINDOW
        found = await self.store.earlier_unfinished(message.key, message.user)
        return [
            item
            for item in found
            if not (item.held_by == "here" and item.received_at < since
                    and not self._is_in_hand(item.key))
        ]  # fmt: skip

    async def _handle_in_order(
        self, message: IncomingMessage, text: str, confirm: bool
    ) -> AsyncGenerator[ReplyEvent, None]:
        start = time.perf_counter()
        key = message.key
        try:
            sentiment = await self.model.tag(text)
        except (ModelBusy, ModelStopped):
            await self._failed(key, confirm)
            yield ReplyFailed("busy", texts.BUSY)
            return
        except ModelTimeout:
            await self._failed(key, confirm)
            yield ReplyFailed("timeout", texts.TIMEOUT)
            return
        except Exception:
            log.exception("tagging failed")
            await self._failed(key, confirm)
            yield ReplyFailed("model_error", texts.MODEL_ERROR)
            return
        sentiment_ms = _ms_since(start)
        self.recent.remember(message.user, text, sentiment, self._now())
        event = MoodEvent(
            platform=message.platform,
            user_id=message.user_id,
            chat_id=message.chat_id,
            label=sentiment.label,
            p_positive=sentiment.p_positive,
            created_at=self._now(),
            excerpt=text[: self.config.excerpt_chars] if self.config.store_message_text else None,
            neutral=sentiment.neutral,
            message_id=message.message_id,  # what a correction button under the label names
        )
        try:
            history = await self.store.recent_turns(
                message.user, message.chat_id, self.config.history_turns, self.config.history_step
            )
        except StorageError as error:
            log.error("could not read conversation memory: %s", error)
            yield SentimentTagged(sentiment, sentiment_ms)
            yield ReplyFailed("storage_error", texts.STORAGE_ERROR, sentiment, answers=False)
            return

        # A message about self-harm is answered in the gentle tone whatever its label, with
        # the safety note in the prompt, and not streamed: its reply is checked first
        # (engine/chat/safety.py guarded_reply), so a refusal is never shown to it, even briefly.
        crisis = safety.crisis_words(text)
        tone: Tone = "negative" if crisis else sentiment.tone
        extra = safety.CRISIS_NOTE[detect_language(text)] if crisis else ""
        layout = self.config.layout
        more = safety.crisis_examples(text, layout) if crisis else ()
        request = reply_request(
            tone, text, tuple(history), self.config.generation, layout, extra, more
        )
        parts: list[str] = []
        first_token_ms: float | None = None
        failure: ReplyFailed | None = None
        tokens: ReplyTokens | None = None
        refused: Exception | None = None
        try:  # queued before the label is shown: an adapter sends the label (a round trip to
            # its platform) while the model already reads the reply prompt
            tokens = self.model.reply(request)
        except Exception as error:  # noqa: BLE001 - answered below, after the label
            refused = error
        try:
            yield SentimentTagged(sentiment, sentiment_ms)
            if refused is not None:
                raise refused
            assert tokens is not None
            async for delta in tokens:
                if first_token_ms is None:
                    first_token_ms = _ms_since(start)
                parts.append(delta)
                if not crisis:
                    yield TextDelta(delta)
        except (ModelBusy, ModelStopped):
            failure = ReplyFailed("busy", texts.BUSY, sentiment)
        except ModelTimeout:
            failure = ReplyFailed("timeout", texts.TIMEOUT, sentiment)
        except Exception:
            log.exception("reply generation failed")
            failure = ReplyFailed("model_error", texts.MODEL_ERROR, sentiment)
        finally:
            if tokens is not None:
                tokens.cancel()  # no-op when it ran to the end; frees the model otherwise

        reply = "".join(parts).strip()
        if failure is None and not reply:
            failure = ReplyFailed("model_error", texts.MODEL_ERROR, sentiment)
        if failure is None and (crisis or tone == "negative"):
            # A streamed negative reply that is replaced shows the template once it is done
            # (the adapters' final edit).
            guarded = safety.guarded_reply(reply, text, crisis)
            if guarded != reply:
                log.info("%s user %s: the reply was replaced by the %s template",
                         message.platform, message.user_id,
                         "caring" if crisis else "gentle")  # fmt: skip
            reply = guarded
        elif failure is not None and crisis:
            # A crisis message is never left with "busy, try again": the caring template
            # answers it, and the note follows.
            log.warning("the reply to a crisis message failed (%s): template sent", failure.reason)
            failure, reply = None, safety.CARING_REPLY[detect_language(text)]
        # The label happened either way, so the mood event is kept; a reply that never
        # completed is not remembered as a turn (it would teach the model a cut-off answer).
        turns = [] if failure else [Turn("user", text), Turn("assistant", reply)]
        try:
            # Marked done in the same transaction: stored and done, or neither. A message
            # whose exchange could not be stored stays 'received' (unfinished work).
            # A confirmed answer (or failure note) is kept until shown in full.
            kept = StoredReply(reply, sentiment)
            if failure is not None:
                kept = StoredReply(failure.message, sentiment, failure=failure.reason)
            await self.store.record_exchange(
                event,
                turns,
                done=key,
                keep_turns=self.config.kept_turns,
                turn_step=self.config.history_step,
                reply=kept if confirm else None,
            )
        except StorageError as error:
            log.error("could not store the message: %s", error)
            yield ReplyFailed("storage_error", texts.STORAGE_ERROR, sentiment, answers=False)
            return
        if confirm and key is not None:
            self._handed_over(key)
        if failure is not None:
            yield failure
            return
        if crisis:
            yield TextDelta(reply)
        support = await self._support_note(message, text, crisis, tone, event.created_at)
        if support and confirm and key is not None:
            await self._keep_reply(key, StoredReply(reply, sentiment, support))
        finished = tokens.finished if tokens is not None else False
        timings = Timings(sentiment_ms, first_token_ms, _ms_since(start))
        yield ReplyDone(reply, sentiment, timings, finished, support)

    async def _support_note(
        self, message: IncomingMessage, text: str, crisis: bool, tone: Tone, at: datetime
    ) -> str:
        """The note to send after the reply ("" for none), recorded: every time for explicit
        words, at most once per STRETCH_NOTE_EVERY for a hard stretch (only checked after a
        negative message), never outside a private chat (there the reply is the gentle one,
        and nothing is shown or recorded)."""
        if not message.private:
            return ""
        trigger: SupportTrigger | None = "words" if crisis else None
        if trigger is None and tone == "negative":
            trigger = await self._stretch(message.user, at)
        if trigger is None:
            return ""
        try:
            await self.store.record_support_note(message.user, trigger, at)
        except StorageError as error:
            # Shown all the same: the note matters more than its record.
            log.error("could not record the support note: %s", error)
        log.info("%s user %s: support note (%s)", message.platform, message.user_id, trigger)
        return safety.support_note(trigger, text, self.config.support_resources)

    async def _stretch(self, user: UserKey, now: datetime) -> SupportTrigger | None:
        try:
            notes = await self.store.support_notes(user, now - safety.STRETCH_NOTE_EVERY)
            if any(note.trigger == "stretch" for note in notes):
                return None
            events = await self.store.mood_events(user, now - safety.STRETCH_LOOKBACK)
        except StorageError as error:
            log.warning("could not read the mood history for the stretch note: %s", error)
            return None
        return "stretch" if safety.hard_stretch(events, now, self.config.tz) else None

    async def warm_up(self) -> float:
        """Have the model read each language's reply opening (persona and examples) once,
        before the first users arrive; returns the seconds it took.

        The opening is ~250 tokens that every reply prompt in that language starts with, and
        the runner keeps its KV. Without this, the first wave of messages after a start waits
        while one reply reads it (measured by benchmarks.load.load --via telegram: 10 s of the first
        replies' wait on a loaded 2-core machine). A failure only costs the first replies that
        time again, so it is logged and ignored."""
        start = time.perf_counter()
        params = replace(self.config.generation, max_new_tokens=1)
        for sample in WARM_UP_SAMPLES:
            request = reply_request("neutral", sample, (), params, self.config.layout)
            try:
                tokens = self.model.reply(request)
                async for _ in tokens:
                    pass
            except Exception as error:  # noqa: BLE001 - an optimisation, never a reason to stop
                log.warning("could not warm up the reply prompts: %s", error)
                break
        return time.perf_counter() - start

    # --- what the commands (engine/chat/commands.py) call -----------------------------------------

    async def mood(self, user: UserKey, days: int = 7) -> MoodReport:
        """The caller's own history; raises ValueError for days outside 1..365."""
        tz = self.config.tz
        now = self._now()  # one reading, so the bounds and the day series agree at midnight
        previous_start, current_start, end = mood.period_bounds(days, now, tz)
        events = await self.store.mood_events(user, previous_start, end)
        previous = [e for e in events if e.created_at < current_start]
        current = [e for e in events if e.created_at >= current_start]
        return mood.build_report(user, current, previous, days, now, tz)

    # /reset and /forget take the user's ordering lock: a message still being answered is
    # finished (and stored) first, so nothing of it can reappear after the deletion.

    async def reset(self, user: UserKey, chat_id: str) -> str:
        async with self._user_lock(user), self.store.user_turn(user):
            await self.store.clear_turns(user, chat_id)
        return texts.RESET_DONE

    async def forget(self, user: UserKey) -> str:
        """Delete everything about the user, every linked account included. Adapters ask for
        confirmation before calling."""
        # Each linked account's turn too (in one order everywhere, so two /forgets cannot
        # deadlock): a message of theirs being answered is stored before, not after.
        accounts = sorted({user, *await self.store.linked_accounts(user)},
                          key=lambda key: (key.platform, key.user_id))  # fmt: skip
        async with contextlib.AsyncExitStack() as turns:
            for account in accounts:
                await turns.enter_async_context(self._user_lock(account))
                await turns.enter_async_context(self.store.user_turn(account))
            rows = await self.store.forget_user(user)
            self.recent.forget(user)
        return texts.forget_done(rows)

    async def _stored_reply(self, key: MessageKey) -> StoredReply | None:
        try:
            return await self.store.stored_reply(key)
        except StorageError as error:
            log.warning("could not read the stored answer (answering afresh): %s", error)
            return None

    async def _keep_reply(self, key: MessageKey, reply: StoredReply) -> None:
        try:
            await self.store.keep_reply(key, reply)
        except StorageError as error:
            # Shown all the same; only a restart before it is shown would miss the note.
            log.warning("could not keep the support note with the answer: %s", error)

    @contextlib.asynccontextmanager
    async def turn(self, user: UserKey, *, capped: bool = True) -> AsyncIterator[None]:
        """Held while a command does model work for the user (/mood why, /mood week) or the
        bot does (the weekly digest): in line with the user's messages, so that the user has
        at most one job at the model worker whatever they send, and counted with them against
        USER_QUEUE_MAX. Raises TooManyWaiting when that many already wait behind the one being
        answered; `capped=False` (the bot's own work) waits its turn instead."""
        entry = self._join_queue(user, self.config.user_queue_max if capped else None)
        if entry is None:
            log.info("%s user %s has too many requests waiting: a command was asked to slow down",
                     user.platform, user.user_id)  # fmt: skip
            raise TooManyWaiting(user)
        async with self._hold(user, entry):
            yield

    async def _failed(self, key: MessageKey | None, confirm: bool) -> None:
        """The message is answered by a failure note: done once the adapter has shown it
        (`delivered`) when it `confirm`s, so a process killed before that leaves the message
        to be answered after a restart; at once otherwise."""
        if confirm and key is not None:
            self._handed_over(key)
        else:
            await self._mark_done(key)

    async def _mark_done(self, key: MessageKey | None) -> None:
        """The message ended without an exchange to store (the user got a failure answer)."""
        if key is None:
            return
        try:
            await self.store.mark_done(key, self._now())
        except StorageError as error:
            log.error("could not mark the message done: %s", error)

    async def _waiting_elsewhere(self, message: IncomingMessage) -> bool:
        """True when USER_QUEUE_MAX of the user's messages already wait in the processes that
        share the store (_join_queue counts only this one's: behind a load balancer a flood
        spreads over all of them). The inbox knows them all."""
        if message.key is None:
            return False
        since = self._now() - WAITING_WINDOW
        try:
            earlier = await self.store.waiting_before(message.key, message.user, since)
        except StorageError as error:
            log.warning("could not count the user's waiting messages: %s", error)
            return False
        return earlier > self.config.user_queue_max

    def _join_queue(self, user: UserKey, waiting_max: int | None = None) -> _UserLock | None:
        """Count one more holder of the user's lock; None when `waiting_max` are already
        waiting behind the holder. No await here, so the check and the count are one step."""
        entry = self._user_locks.setdefault(user, _UserLock())
        if waiting_max is not None and entry.holders > waiting_max:
            return None
        entry.holders += 1
        self._told_to_slow_down.discard(user)  # a message got in: the next burst is told again
        return entry

    def _user_lock(self, user: UserKey) -> contextlib.AbstractAsyncContextManager[None]:
        entry = self._join_queue(user)
        assert entry is not None  # no limit was given
        return self._hold(user, entry)

    @contextlib.asynccontextmanager
    async def _hold(self, user: UserKey, entry: _UserLock) -> AsyncIterator[None]:
        # Counted, so a user's lock is dropped when nobody holds or awaits it: a bot that
        # meets thousands of users does not keep a lock for each one forever.
        try:
            async with entry.lock:
                yield
        finally:
            entry.holders -= 1
            if entry.holders == 0:
                del self._user_locks[user]


class TooManyWaiting(Exception):
    """The user has USER_QUEUE_MAX requests waiting already: they are asked to slow down."""


@dataclass
class _UserLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holders: int = 0  # holding or waiting
