"""Batched decoding (TransformersRunner.step_many) on the tiny random Qwen2, in float32.

The bar: a reply decoded in a batch with others gives exactly the tokens it gives when
decoded alone, whatever joins, leaves or is closed around it. The tiny model's greedy output
depends strongly on its context (tests/tiny_model.py), so a wrong position, an unmasked pad
or a row mixed up with another shows up as different tokens. Also here: the per-row sampler,
and the reuse of the KV cache of a prompt's fixed opening (system prompt and examples).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.chat.prompts import detect_language, reply_request
from engine.model.backends.transformers_runner import (
    CONVERSATIONS_KEPT,
    REPLY_PREFIXES_KEPT,
    TransformersReply,
    TransformersRunner,
)
from engine.model.sampling import ReplySampler
from engine.types import GenerationParams, Label, ReplyRequest, Turn
from tests import tiny_model


def greedy(max_new_tokens: int) -> GenerationParams:
    return GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, repetition_penalty=1.0)


# Prompts of clearly different lengths, so the batch is left-padded.
PROMPTS = (
    ("hello", greedy(24)),
    ("I am so happy today, everything went great! The weather is nice and I love my friends.",
     greedy(12)),
    ("今天天气很好，我很开心。", greedy(30)),
)  # fmt: skip


# The tiny model only slows down with more threads (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return tiny_model.build(Path(tmp_path_factory.mktemp("tiny-batch")))


@pytest.fixture
def runner(tiny: tuple[Any, Any]) -> TransformersRunner:
    model, tokenizer = tiny
    return TransformersRunner(model, tokenizer, "tiny")


def request(text: str, params: GenerationParams) -> ReplyRequest:
    return ReplyRequest(system="You are a friendly test bot.", history=(), user_text=text,
                        params=params)  # fmt: skip


def solo(runner: TransformersRunner, text: str, params: GenerationParams) -> tuple[list[int], str]:
    """Token ids and streamed text of the reply decoded alone with step()."""
    runner._kept.clear()  # computed afresh, not continued from a kept exchange
    reply = runner.start_reply(request(text, params))
    deltas: list[str] = []
    while (delta := reply.step()) is not None:
        deltas.append(delta)
    return reply.generated, "".join(deltas)


class Batch:
    """Drives step_many like the worker does, collecting each reply's deltas."""

    def __init__(self, runner: TransformersRunner) -> None:
        self.runner = runner
        self.live: list[TransformersReply] = []
        self.text: dict[int, str] = {}
        self.sizes: list[int] = []  # decoding rows held by the batch after each step

    def add(self, text: str, params: GenerationParams) -> TransformersReply:
        reply = self.runner.start_reply(request(text, params))
        self.live.append(reply)
        self.text[id(reply)] = ""
        return reply

    def step(self) -> None:
        deltas = self.runner.step_many(self.live)
        for reply, delta in zip(self.live, deltas, strict=True):
            if delta is not None:
                self.text[id(reply)] += delta
        self.live = [r for r, d in zip(self.live, deltas, strict=True) if d is not None]
        self.sizes.append(len(self.runner._batch.members))

    def run(self, steps: int = 1000) -> None:
        for _ in range(steps):
            if not self.live:
                return
            self.step()


def assert_matches_solo(
    runner: TransformersRunner, batch: Batch, replies: Sequence[TransformersReply],
    prompts: Sequence[tuple[str, GenerationParams]],
) -> None:  # fmt: skip
    for reply, (text, params) in zip(replies, prompts, strict=True):
        ids, streamed = solo(runner, text, params)
        assert len(set(ids)) > 3, "the solo reply should be a varied continuation"
        assert reply.generated == ids
        assert batch.text[id(reply)] == streamed


def test_greedy_replies_decoded_together_match_each_decoded_alone(
    runner: TransformersRunner,
) -> None:
    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in PROMPTS]
    lengths = {len(reply.pending[0]) for reply in replies}
    assert len(lengths) == 3  # different prompt lengths: the rows are padded differently

    batch.run()

    assert max(batch.sizes) == 3  # all three really shared a forward pass
    assert_matches_solo(runner, batch, replies, PROMPTS)
    # Two were cut by their own max_new_tokens, the third ended its turn by itself.
    assert [len(r.generated) for r in replies[:2]] == [24, 12]
    assert [r.finished for r in replies] == [False, False, True]
    assert runner._batch.members == []  # the last one out freed the batched cache


def test_each_rows_scores_equal_a_plain_pass_over_its_whole_sequence(
    runner: TransformersRunner,
) -> None:
    # Greedy tokens alone cannot catch attention to the pads: the tiny model's attention is
    # so peaked that unmasked pads move the scores by ~1e-2, rarely enough to change a token.
    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in PROMPTS]
    for _ in range(3):
        batch.step()
    prompts = [runner.reply_prompt_ids(request(text, params)) for text, params in PROMPTS]

    logits = runner._batch.step(replies)

    for reply, prompt, scores in zip(replies, prompts, logits, strict=True):
        with torch.no_grad():
            whole = torch.tensor([prompt + reply.generated])
            expected = runner.model(input_ids=whole).logits[0, -1]
        torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)


def test_a_reply_joining_mid_decode_and_one_leaving_still_match(
    runner: TransformersRunner,
) -> None:
    batch = Batch(runner)
    first = batch.add(*PROMPTS[0])
    second = batch.add(*PROMPTS[1])
    for _ in range(5):
        batch.step()
    third = batch.add(*PROMPTS[2])  # prefilled on its own while the other two decode
    batch.run()

    assert 2 in batch.sizes
    assert 3 in batch.sizes
    # `second` (12 tokens) left first; the other two went on in a smaller batch.
    assert batch.sizes[-1] == 0
    assert 2 in batch.sizes[batch.sizes.index(3) :]
    assert_matches_solo(runner, batch, [first, second, third], PROMPTS)


def test_a_reply_that_stops_early_leaves_the_others_unaffected(
    runner: TransformersRunner,
) -> None:
    # Make the 4th token of the first reply a stop token: it ends its turn mid-batch.
    stop = solo(runner, *PROMPTS[0])[0][3]
    runner.stop_ids = runner.stop_ids | {stop}
    expected = [solo(runner, text, params)[0] for text, params in PROMPTS]
    assert len(expected[0]) == 3
    assert all(len(ids) > 3 for ids in expected[1:])

    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in PROMPTS]
    batch.run()

    assert [reply.generated for reply in replies] == expected
    assert replies[0].finished is True
    assert replies[0].cache is None


def test_closing_a_reply_mid_batch_leaves_the_others_unaffected(
    runner: TransformersRunner,
) -> None:
    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in PROMPTS]
    for _ in range(4):
        batch.step()
    cancelled = replies[1]
    cancelled.close()  # what the worker does when a caller gives up
    batch.live.remove(cancelled)
    batch.run()

    assert cancelled.step() is None
    assert cancelled.finished is False
    assert len(cancelled.generated) == 4
    kept = [replies[0], replies[2]]
    assert_matches_solo(runner, batch, kept, [PROMPTS[0], PROMPTS[2]])


def test_a_batched_reply_can_go_on_alone_with_step(runner: TransformersRunner) -> None:
    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in PROMPTS]
    for _ in range(6):
        batch.step()
    alone = replies[2]
    batch.live.remove(alone)
    while (delta := alone.step()) is not None:  # takes its KV back out of the batch
        batch.text[id(alone)] += delta
    batch.run()

    assert_matches_solo(runner, batch, replies, PROMPTS)


def test_seeded_sampling_in_a_batch_matches_sampling_alone(runner: TransformersRunner) -> None:
    prompts = [
        (text, GenerationParams(max_new_tokens=15, temperature=1.0, top_p=0.9, top_k=50,
                                seed=seed))
        for seed, (text, _) in enumerate(PROMPTS)
    ]  # fmt: skip
    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in prompts]
    batch.run()
    assert_matches_solo(runner, batch, replies, prompts)


def test_a_failed_batched_step_ends_every_reply_in_it(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = tiny
    runner = TransformersRunner(copy.deepcopy(model), tokenizer, "tiny")
    batch = Batch(runner)
    replies = [batch.add(text, params) for text, params in PROMPTS[:2]]
    batch.step()  # both prefilled on their own

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runner._batch, "model", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        batch.step()
    assert all(reply.done and reply.cache is None for reply in replies)
    assert runner.step_many(replies) == [None, None]
    assert runner._batch.members == []

    monkeypatch.undo()  # the runner recovers for the next replies
    again = Batch(runner)
    fresh = [again.add(text, params) for text, params in PROMPTS[:2]]
    again.run()
    assert_matches_solo(runner, again, fresh, PROMPTS[:2])


def test_step_many_refuses_streams_of_another_kind(runner: TransformersRunner) -> None:
    class Foreign:
        finished = False

        def step(self) -> str | None:
            return None

        def close(self) -> None:
            pass

    with pytest.raises(TypeError):
        runner.step_many([Foreign()])


# --- the shared opening of reply prompts -----------------------------------------------------


def test_replies_reuse_the_kv_of_their_shared_opening(runner: TransformersRunner) -> None:
    examples = (Turn("user", "example question"), Turn("assistant", "example answer"))
    requests = [
        ReplyRequest(system="You are a friendly test bot.", history=(), user_text=text,
                     params=greedy(20), examples=examples)
        for text in ("hello", "I am so happy today", "今天天气很好")
    ]  # fmt: skip
    first = runner.start_reply(requests[0])
    (stored,) = runner._reply_prefixes.values()
    opening = [(keys.clone(), values.clone()) for keys, values in stored]
    assert 0 < first.length < len(runner.reply_prompt_ids(requests[0]))

    batch = Batch(runner)
    replies = [first, *(runner.start_reply(req) for req in requests[1:])]
    batch.live = list(replies)
    batch.text = {id(reply): "" for reply in replies}
    batch.run()

    assert len(runner._reply_prefixes) == 1  # one opening, computed once
    for reply, req in zip(replies, requests, strict=True):
        assert reply.length > 0
        no_reuse = ReplySampler(req.params)
        whole = TransformersReply(runner, runner.reply_prompt_ids(req), no_reuse)
        while whole.step() is not None:
            pass
        assert reply.generated == whole.generated
    for (keys, values), (old_keys, old_values) in zip(stored, opening, strict=True):
        assert torch.equal(keys, old_keys)
        assert torch.equal(values, old_values)


# --- kept exchanges: the next message of a chat continues the last one's KV -----------------


def finish(reply: TransformersReply) -> str:
    return "".join(delta for delta in iter(reply.step, None))


def follow_up(text: str, answer: str, params: GenerationParams) -> ReplyRequest:
    history = (Turn("user", text), Turn("assistant", answer))
    return ReplyRequest(system="You are a friendly test bot.", history=history,
                        user_text="and after that?", params=params)  # fmt: skip


@pytest.mark.parametrize("batched", [False, True])
def test_the_next_message_continues_the_kept_exchange(
    runner: TransformersRunner, batched: bool
) -> None:
    text, params = PROMPTS[0]
    if batched:  # ended as a row of the batch: its KV is copied out of the batched cache
        batch = Batch(runner)
        first = batch.add(text, params)
        batch.add(*PROMPTS[1])
        batch.run()
        answer = batch.text[id(first)]
    else:
        first = runner.start_reply(request(text, params))
        answer = finish(first)
    assert runner._batch.members == []
    assert len(runner._kept) == (2 if batched else 1)

    later = follow_up(text, answer, greedy(16))
    ids = runner.reply_prompt_ids(later)
    reply = runner.start_reply(later)
    # Its whole first prompt, and the answer as far as it re-tokenises the same, came from
    # the kept KV; only the rest is run.
    assert len(first.prompt_ids) <= reply.length < len(ids)
    assert reply.pending[0].tolist() == ids[reply.length :]
    assert len(runner._kept) == (1 if batched else 0)  # the continued exchange is used up
    continued = (finish(reply), reply.generated)

    runner._kept.clear()
    fresh = runner.start_reply(later)
    assert fresh.length < len(first.prompt_ids)  # only the shared opening (the system prompt)
    assert (finish(fresh), fresh.generated) == continued


def test_only_a_few_exchanges_are_kept(runner: TransformersRunner) -> None:
    for index in range(CONVERSATIONS_KEPT + 3):
        finish(runner.start_reply(request(f"message {index}", greedy(3))))
    assert len(runner._kept) == CONVERSATIONS_KEPT
    kept = [runner.tokenizer.decode(entry.tokens) for entry in runner._kept]
    assert "message 0" not in "".join(kept)  # the least recently used went first
    assert f"message {CONVERSATIONS_KEPT + 2}" in kept[-1]
    cancelled = runner.start_reply(request("cancelled", greedy(8)))
    cancelled.step()
    cancelled.close()
    assert "cancelled" not in runner.tokenizer.decode(runner._kept[-1].tokens)


def test_only_a_few_prompt_openings_are_kept(runner: TransformersRunner) -> None:
    for index in range(REPLY_PREFIXES_KEPT + 3):
        runner.start_reply(
            ReplyRequest(system=f"persona {index}", history=(), user_text="hi", params=greedy(4))
        ).close()
    assert len(runner._reply_prefixes) == REPLY_PREFIXES_KEPT
    kept = [runner.tokenizer.decode(list(ids)) for ids in runner._reply_prefixes]
    assert "persona 0" not in "".join(kept)  # the least recently used went first
    assert f"persona {REPLY_PREFIXES_KEPT + 2}" in kept[-1]


@pytest.mark.model
def test_real_model_replies_sampled_in_one_batch_are_sane(real_runner: TransformersRunner) -> None:
    texts: list[tuple[str, Label]] = [
        ("今天的实验终于成功了，太棒了！", "positive"), ("我好难过，考试又没过。", "negative"),
        ("I finally got the job offer today!", "positive"),
        ("My flight got cancelled and I lost my luggage.", "negative"),
    ]  # fmt: skip
    replies = []
    for seed, (text, label) in enumerate(texts):
        params = GenerationParams(max_new_tokens=120, seed=seed)  # the bot's sampling
        replies.append(real_runner.start_reply(reply_request(label, text, (), params)))
    batch = Batch(real_runner)
    batch.live = list(replies)
    batch.text = {id(reply): "" for reply in replies}
    batch.run()

    assert max(batch.sizes) == len(texts)
    for reply, (text, _) in zip(replies, texts, strict=True):
        answer = batch.text[id(reply)].strip()
        assert reply.finished, f"reply hit the token cap: {answer!r}"
        assert detect_language(answer) == detect_language(text)
        assert "<|im_end|>" not in answer
        assert "<|endoftext|>" not in answer
