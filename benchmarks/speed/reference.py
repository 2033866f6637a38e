"""The original design, followed literally, as the yardstick for the latency bench.

fp32 weights of the same model; the analyst prompt answered by `model.generate(max_new_tokens=5)`
and parsed; then a fresh `model.generate(...)` for the reply with the same sampling settings
and token cap as the bot. No KV cache reuse, no batching, no truncation, no worker thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from engine.chat import prompts
from engine.model import labelling
from engine.model.backends.transformers_runner import STOP_TOKENS
from engine.model.labelling import parse_generated_label
from engine.types import GenerationParams, Label


@dataclass(frozen=True)
class ReferenceReply:
    text: str
    tokens: int  # generated tokens, not counting the end-of-turn token
    first_token_s: float  # from the start of the reply call to the first generated token
    total_s: float
    finished: bool  # the model ended its turn before the token cap


class _FirstTokenTimer:
    """A generate() streamer that only notes when the first new token arrives."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.first_token_at is None:  # call 1 is the prompt
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


class ReferenceBot:
    def __init__(self, model: Any, tokenizer: Any, params: GenerationParams) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.params = params
        vocab = tokenizer.get_vocab()
        self.stop_ids = sorted(vocab[token] for token in STOP_TOKENS if token in vocab)

    @classmethod
    def load(cls, folder: str, params: GenerationParams, threads: int = 0) -> ReferenceBot:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(folder, fix_mistral_regex=False)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        return cls(model, tokenizer, params)

    def _ids(self, messages: list[dict[str, str]]) -> torch.Tensor:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return torch.tensor([list(ids)])

    def _generate(self, ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            eos_token_id=self.stop_ids,
            pad_token_id=self.stop_ids[0],
            **kwargs,
        )[0, ids.shape[1] :]

    @torch.inference_mode()
    def tag(self, text: str) -> tuple[Label | None, str]:
        """The analyst prompt, 5 greedy tokens, parsed; None when it named neither label."""
        ids = self._ids([
            {"role": "system", "content": labelling.ANALYST_SYSTEM},
            {"role": "user",
             "content": labelling.ANALYST_USER_HEAD + text + labelling.ANALYST_USER_TAIL},
        ])  # fmt: skip
        new = self._generate(ids, max_new_tokens=5, do_sample=False)
        answer = self.tokenizer.decode(new, skip_special_tokens=True)
        return parse_generated_label(answer), answer

    def answer(self, text: str) -> dict[str, Any]:
        """One message as the design handles it: label, then reply; the times from its start."""
        start = time.perf_counter()
        label, _raw = self.tag(text)
        sentiment_s = time.perf_counter() - start
        reply = self.reply(text, label or "negative")  # unparsable: the design had no rule
        return {"sentiment_s": sentiment_s, "first_token_s": sentiment_s + reply.first_token_s,
                "total_s": time.perf_counter() - start, "tokens": reply.tokens,
                "finished": reply.finished, "unparsable": label is None}  # fmt: skip

    @torch.inference_mode()
    def reply(self, text: str, label: Label) -> ReferenceReply:
        messages = [
            {
                "role": "system",
                "content": prompts.reply_system_prompt(label, text, prompts.FIRST_LAYOUT),
            }
        ]
        examples = prompts.reply_examples(label, text, prompts.FIRST_LAYOUT)
        messages += [{"role": t.role, "content": t.content} for t in examples]
        messages.append({"role": "user", "content": text})
        p = self.params
        if p.seed is not None:
            torch.manual_seed(p.seed)
        sampling: dict[str, Any] = {"do_sample": False}
        if p.temperature > 0:
            sampling = {"do_sample": True, "temperature": p.temperature, "top_p": p.top_p,
                        "top_k": p.top_k}  # fmt: skip
        timer = _FirstTokenTimer()
        start = time.perf_counter()
        ids = self._ids(messages)
        new = self._generate(
            ids,
            max_new_tokens=p.max_new_tokens,
            repetition_penalty=p.repetition_penalty,
            streamer=timer,
            **sampling,
        ).tolist()
        total = time.perf_counter() - start
        finished = bool(new) and new[-1] in self.stop_ids
        tokens = new[:-1] if finished else new
        first = (timer.first_token_at or time.perf_counter()) - start
        return ReferenceReply(
            text=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
            tokens=len(tokens),
            first_token_s=first,
            total_s=total,
            finished=finished,
        )
