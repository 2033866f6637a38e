"""The model's two jobs on a remote OpenAI-compatible serving engine (BACKEND=openai).

This is a engine.ports.ModelFacade, not a engine.model.runner.ModelRunner. A runner is blocking code
that the one worker thread drives a step at a time, because in-process that thread is the
scheduler. A serving engine schedules and batches by itself (vLLM's continuous batching,
llama.cpp's slots); stepping it from one thread would serialise network round trips and add a
thread hop per token. So this class runs on the event loop: one request per batch of waiting
labels, one SSE stream per reply, as many in flight as the server takes.

What stays as in-process: the prompts (the same ids, from engine/model/labelling.py and
engine/model/prompt_ids.py with the tokenizer MODEL names), the label arithmetic
(labelling.sentiment_from_scores), admission (QUEUE_SIZE) and deadlines (REQUEST_TIMEOUT_S).

Two kinds of server (OPENAI_SERVER; `auto` asks /v1/models, where vLLM says owned_by "vllm"):
- vLLM gets token ids: labels waiting together in one request (a list of prompts), scored by
  the two label ids alone (`logprob_token_ids`), optionally ahead of replies (`priority`);
- any other server (llama.cpp's servers) gets those ids spelled as text, one prompt per
  request, and the label words are read from `top_logprobs`.

Either way a user's text cannot open a chat role: the ids are built with every content
encoded as plain text (engine/model/prompt_ids.py), and the text sent to a server that parses
special tokens in it has them defused between the template's markers (Tokens.spell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from engine.errors import ModelBusy, ModelLoadError, ModelStopped, ModelTimeout
from engine.model import labelling
from engine.model.backends.openai_api.labels import (
    LabelScores,
    first_position_top,
    label_scores,
    token_id_key,
)
from engine.model.backends.openai_api.tokens import Tokens
from engine.model.config import OpenAIConfig, WorkerConfig
from engine.model.delta_stream import DeltaStream, StreamEnd, StreamFailure
from engine.model.label_head import LabelHead, ModelIdentity, head_for
from engine.model.labelling import analyst_frame
from engine.model.prompt_ids import ReplyPrompter, chatml, encode_template, keep_head_and_tail
from engine.model.runner import RunnerOptions
from engine.types import ReplyRequest, Sentiment

log = logging.getLogger(__name__)

STOP_TEXTS = ("<|im_end|>", "<|endoftext|>")
LABEL_PRIORITY = -1  # vLLM runs lower values first; replies keep the default, 0
# Compared with the server's /tokenize before any id is sent (vLLM only).
TOKENIZER_PROBE = "<|im_start|>user\n今天心情不错, but the 🍕 was cold…<|im_end|>\n"


class ReplyBroken(RuntimeError):
    """The server stopped sending a reply before it was finished (it died, or cut the stream)."""


def engine_error(error: openai.APIError, url: str) -> Exception:
    """What the chat logic should hear: busy (429, 503, unreachable), timeout, or the error."""
    mapped: Exception = error
    if isinstance(error, openai.APITimeoutError):
        mapped = ModelTimeout(f"the model server at {url} did not answer in time")
    elif isinstance(error, openai.APIConnectionError):
        mapped = ModelStopped(f"the model server at {url} is unreachable ({_cause(error)})")
    elif isinstance(error, openai.APIStatusError) and error.status_code in (429, 503):
        mapped = ModelBusy(f"the model server at {url} is busy ({error.status_code})")
    if mapped is not error:  # the chat logic answers these without logging them
        log.warning("%s", mapped)
    return mapped


def _cause(error: BaseException) -> str:
    return str(error.__cause__ or error) or type(error).__name__


class RemoteReply(DeltaStream):
    """The text deltas of one streamed reply; `finished` is known at the end.

    A task of its own reads the stream, so text already generated is handed over even to a
    reader that comes back late (as with the worker), and cancel() closes the connection at
    once: vLLM then aborts the request, llama.cpp's servers stop at the next token.
    """

    def __init__(
        self, events: AsyncIterator[str | StreamEnd], timeout_s: float, on_done: Callable[[], None]
    ) -> None:
        super().__init__(on_done)
        self._queue: asyncio.Queue[str | StreamEnd | StreamFailure] = asyncio.Queue()
        self._deadline = time.monotonic() + timeout_s
        self._task = asyncio.get_running_loop().create_task(self._pump(events))

    async def _pump(self, events: AsyncIterator[str | StreamEnd]) -> None:
        try:
            async for event in events:
                self._queue.put_nowait(event)
        except Exception as error:  # noqa: BLE001 - every failure goes to the reader
            self._queue.put_nowait(StreamFailure(error))

    async def _next_item(self) -> str | StreamEnd | StreamFailure:
        if not self._queue.empty():
            return self._queue.get_nowait()
        async with asyncio.timeout(max(self._deadline - time.monotonic(), 0.0)):
            return await self._queue.get()

    def cancel(self) -> None:
        """Stop the reply (the caller gave up): the stream's connection is closed."""
        self._task.cancel()
        self._finish()

    def abort(self, error: BaseException) -> None:
        """End the reply with `error` for its reader (the engine is stopping)."""
        self._task.cancel()
        self._queue.put_nowait(StreamFailure(error))


@dataclass
class _Served:
    """What start() learned: the client, the model's name and kind, and its prompts."""

    client: openai.AsyncOpenAI
    model: str
    vllm: bool
    tokens: Tokens
    head: list[int]  # the analyst frame around the user's text
    tail: list[int]
    label_ids: tuple[int, int]
    stop_ids: list[int]
    prompter: ReplyPrompter
    label_head: LabelHead  # the calibration fitted for the model MODEL names


class OpenAIEngine:
    def __init__(
        self,
        remote: OpenAIConfig,
        limits: WorkerConfig,
        options: RunnerOptions,
        load_tokens: Callable[[], Tokens],
        load_head: Callable[[], LabelHead] | None = None,
    ) -> None:
        """`load_head` finds the label head fitted for the model MODEL names (the package's
        load_service passes it); without it, the head kept under the served model's name."""
        self.config = remote
        self.name = f"the model server at {remote.base_url}"
        self._timeout_s = limits.request_timeout_s
        self._queue_size = limits.queue_size
        self._options = options
        self._load_tokens = load_tokens
        self._load_head = load_head
        self.label_head: LabelHead | None = None  # known once started
        self._served: _Served | None = None
        self._outstanding = 0
        self._replies: set[RemoteReply] = set()
        self._waiting_labels: list[tuple[list[int], str, asyncio.Future[Sentiment]]] = []
        self._label_sender: asyncio.Task[None] | None = None
        self._told_no_dry = False  # vLLM has no DRY: said once, at the first reply

    @property
    def url(self) -> str:
        return self.config.base_url

    # --- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the server, read the tokenizer and run one label (which also warms
        the analyst head in the server's prefix cache). Raises ModelLoadError saying what to
        fix: the URL when the server is unreachable, the key on 401, the model name."""
        client = openai.AsyncOpenAI(
            base_url=self.url,
            api_key=self.config.api_key or "none",  # the client insists on one
            max_retries=0,  # a 429 or 503 is the user's "busy" now, not a retry later
            timeout=self._timeout_s,
        )
        try:
            model, vllm = await self._find_model(client)
            tokens = await asyncio.to_thread(self._load_tokens)
            if self._load_head is not None:
                head = await asyncio.to_thread(self._load_head)
            else:
                head = head_for(ModelIdentity(model))
            self._served = self._prompts(client, model, vllm, tokens, head)
            self.label_head = head
            if vllm:
                await self._check_tokenizer(self._served)
            await self._warm_up(self._served)
        except BaseException:
            self._served = None
            await client.close()
            raise
        kind = "vLLM, prompts as token ids" if vllm else "prompts as text"
        self.name = f"{model} at {self.url} ({kind}; {tokens.name})"

    async def stop(self) -> None:
        served, self._served = self._served, None
        stopped = ModelStopped("the bot is shutting down")
        if self._label_sender is not None:
            self._label_sender.cancel()
        for _, _, future in self._waiting_labels:
            if not future.done():
                future.set_exception(stopped)
        self._waiting_labels = []
        for reply in list(self._replies):
            reply.abort(stopped)
        if served is not None:
            await served.client.close()

    async def _find_model(self, client: openai.AsyncOpenAI) -> tuple[str, bool]:
        try:
            page = await client.models.list()
        except openai.AuthenticationError:
            raise ModelLoadError(
                f"the model server at {self.url} refused OPENAI_API_KEY (401 Unauthorized): "
                "set OPENAI_API_KEY to the key the server expects"
            ) from None
        except openai.APIConnectionError as error:
            raise ModelLoadError(
                f"cannot reach the model server at {self.url} ({_cause(error)}): start it, "
                "or set OPENAI_BASE_URL to where it listens"
            ) from None
        except openai.APIStatusError as error:
            raise ModelLoadError(
                f"the model server at {self.url} answered {error.status_code} to GET /models: "
                "OPENAI_BASE_URL must be its OpenAI API root (usually ending in /v1)"
            ) from None
        owners = {model.id: getattr(model, "owned_by", "") for model in page.data}
        if not owners:
            raise ModelLoadError(f"the model server at {self.url} serves no model")
        name = self.config.model or next(iter(owners))
        if name not in owners:
            raise ModelLoadError(
                f"OPENAI_MODEL={name!r} is not served at {self.url}; it serves: "
                + ", ".join(sorted(owners))
            )
        kind = self.config.server
        return name, kind == "vllm" or (kind == "auto" and owners[name] == "vllm")

    def _prompts(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        vllm: bool,
        tokens: Tokens,
        label_head: LabelHead,
    ) -> _Served:
        head, tail = analyst_frame(chatml, tokens.encode, tokens.specials)
        prompter = ReplyPrompter(
            chatml, tokens.encode, tokens.decode, tokens.specials,
            input_max_tokens=self._options.reply_input_max_tokens,
            history_max_tokens=self._options.history_max_tokens,
        )  # fmt: skip
        labels = (tokens.single_token(labelling.POSITIVE_WORD),
                  tokens.single_token(labelling.NEGATIVE_WORD))  # fmt: skip
        stops = [tokens.special(text) for text in STOP_TEXTS]
        return _Served(client, model, vllm, tokens, head, tail, labels, stops, prompter,
                       label_head)  # fmt: skip

    async def _check_tokenizer(self, served: _Served) -> None:
        """Token ids only mean the same thing if MODEL's tokenizer is the served model's."""
        root = self.url.removesuffix("/v1")
        try:
            answer = await served.client.with_options(base_url=root).post(
                "/tokenize",
                cast_to=object,
                body={"model": served.model, "prompt": TOKENIZER_PROBE,
                      "add_special_tokens": False},
            )  # fmt: skip
            theirs = answer["tokens"]  # type: ignore[index]
        except (openai.APIError, KeyError, TypeError) as error:
            log.warning(
                "could not compare tokenizers with %s/tokenize (%s); labels and replies "
                "assume MODEL's tokenizer is %s's", root, error, served.model,
            )  # fmt: skip
            return
        ours = encode_template(TOKENIZER_PROBE, served.tokens.encode, served.tokens.specials)
        if theirs != ours:
            raise ModelLoadError(
                f"{served.model} at {self.url} tokenizes differently from {served.tokens.name}: "
                "prompts are sent to vLLM as token ids, so MODEL must name the served model's "
                "tokenizer (e.g. the same hub id, or a GGUF of the same family)"
            )

    async def _warm_up(self, served: _Served) -> None:
        """One label, now: the analyst head enters the server's prefix cache, and a server
        that cannot give the label's logprobs stops the start with a message."""
        ids = self._label_ids(served, "今天的实验终于成功了，太棒了！")
        try:
            (scores,) = await self._request_labels(served, [ids])
        except openai.APIStatusError as error:
            hint = " (OPENAI_PRIORITY=true needs vLLM's --scheduling-policy priority)" if (
                self.config.priority and served.vllm) else ""  # fmt: skip
            raise ModelLoadError(f"a label request to {self.url} failed: {error}{hint}") from None
        except Exception as error:  # noqa: BLE001 - whatever it is, the start stops with it
            raise ModelLoadError(f"a label request to {self.url} failed: {error!r}") from None
        if scores.listed == 0:
            raise ModelLoadError(
                f"{served.model} at {self.url} did not list either label word "
                f"({labelling.POSITIVE_WORD}/{labelling.NEGATIVE_WORD}) among its top "
                f"{self.config.top_logprobs} logprobs: serve a Qwen-family chat model, or "
                "raise OPENAI_TOP_LOGPROBS"
            )

    # --- admission ------------------------------------------------------------------------

    def _admit(self) -> _Served:
        if self._served is None:
            raise ModelStopped("the model server is not connected")
        if self._outstanding >= self._queue_size:
            raise ModelBusy(f"{self._outstanding} requests are already waiting")
        self._outstanding += 1
        return self._served

    def _release(self) -> None:
        self._outstanding -= 1

    # --- labels ---------------------------------------------------------------------------

    async def tag(self, text: str) -> Sentiment:
        async with self._labelling() as served:
            ids = self._label_ids(served, text)
            if served.vllm:
                return await self._queued_label(ids, text)
            (scores,) = await self._request_labels(served, [ids])
            return scores.sentiment(text, served.label_head)

    async def tag_many(self, texts: Sequence[str]) -> list[Sentiment]:
        """Several labels at once, one admission: vLLM gets them in one request (a list of
        prompts); llama.cpp's server, which takes one prompt per request, gets them
        concurrently (its slots run them side by side)."""
        if not texts:
            return []
        async with self._labelling() as served:
            prompts = [self._label_ids(served, text) for text in texts]
            if served.vllm:
                scores = await self._request_labels(served, prompts)
            else:
                answers = await asyncio.gather(
                    *(self._request_labels(served, [ids]) for ids in prompts)
                )
                scores = [score for (score,) in answers]
            return [score.sentiment(text, served.label_head)
                    for score, text in zip(scores, texts, strict=True)]  # fmt: skip

    @contextlib.asynccontextmanager
    async def _labelling(self) -> AsyncIterator[_Served]:
        """One admitted label request: its deadline, and the server's errors in our terms."""
        served = self._admit()
        try:
            async with asyncio.timeout(self._timeout_s):
                yield served
        except TimeoutError:
            raise ModelTimeout("labelling took too long") from None
        except openai.APIError as error:
            raise engine_error(error, self.url) from error
        finally:
            self._release()

    def _label_ids(self, served: _Served, text: str) -> list[int]:
        user = served.tokens.encode(text)
        user = keep_head_and_tail(user, self._options.sentiment_max_tokens)
        return served.head + user + served.tail

    async def _queued_label(self, ids: list[int], text: str) -> Sentiment:
        """Labels that wait together go in one request: while one is in flight, the next
        ones gather and leave together when it returns."""
        future: asyncio.Future[Sentiment] = asyncio.get_running_loop().create_future()
        self._waiting_labels.append((ids, text, future))
        if self._label_sender is None or self._label_sender.done():
            self._label_sender = asyncio.create_task(self._send_labels())
        return await future  # a caller that gives up cancels it, and it is skipped

    async def _send_labels(self) -> None:
        while self._waiting_labels and (served := self._served) is not None:
            batch = [waiting for waiting in self._waiting_labels if not waiting[2].done()]
            self._waiting_labels = []
            if not batch:
                continue
            try:
                scores = await self._request_labels(served, [ids for ids, _, _ in batch])
            except Exception as error:  # noqa: BLE001 - each waiting caller gets it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, text, future), score in zip(batch, scores, strict=True):
                if not future.done():
                    future.set_result(score.sentiment(text, served.label_head))

    async def _request_labels(self, served: _Served, prompts: list[list[int]]) -> list[LabelScores]:
        """One answer position per prompt, temperature 0, with the two words' logprobs."""
        positive, negative = served.label_ids
        if served.vllm:
            extra: dict[str, Any] = {"logprob_token_ids": [positive, negative],
                                     "return_tokens_as_token_ids": True}  # fmt: skip
            if self.config.priority:
                extra["priority"] = LABEL_PRIORITY
            answer = await served.client.completions.create(
                model=served.model, prompt=prompts, max_tokens=1, temperature=0.0,
                logprobs=self.config.top_logprobs, extra_body=extra,
            )  # fmt: skip
            choices = sorted(answer.choices, key=lambda choice: choice.index)
        else:
            (ids,) = prompts  # llama.cpp's Python server takes one prompt per request
            answer = await served.client.completions.create(
                model=served.model, prompt=served.tokens.spell(ids), max_tokens=1,
                temperature=0.0, logprobs=self.config.top_logprobs,
                extra_body={"n_probs": self.config.top_logprobs},  # llama-server's own name
            )  # fmt: skip
            choices = answer.choices
        if len(choices) != len(prompts):
            raise RuntimeError(f"{len(prompts)} label prompts got {len(choices)} answers")
        keys = ((token_id_key(positive), labelling.POSITIVE_WORD),
                (token_id_key(negative), labelling.NEGATIVE_WORD))  # fmt: skip
        return [label_scores(first_position_top(choice.logprobs), *keys) for choice in choices]

    # --- replies --------------------------------------------------------------------------

    def reply(self, request: ReplyRequest) -> RemoteReply:
        served = self._admit()

        def done() -> None:
            self._replies.discard(reply)
            self._release()

        reply = RemoteReply(self._stream(served, request), self._timeout_s, done)
        self._replies.add(reply)
        return reply

    async def _stream(
        self, served: _Served, request: ReplyRequest
    ) -> AsyncIterator[str | StreamEnd]:
        ids = served.prompter.build(request).ids
        params = request.params
        if served.vllm:
            prompt: str | list[int] = ids
            extra: dict[str, Any] = {
                "top_k": params.top_k or -1, "repetition_penalty": params.repetition_penalty,
                "min_p": 0.0, "stop_token_ids": served.stop_ids, "return_token_ids": True,
            }  # fmt: skip
            if params.dry_multiplier and not self._told_no_dry:
                self._told_no_dry = True
                log.warning("vLLM has no DRY sampler: DRY_MULTIPLIER is not applied to replies")
        else:
            prompt = served.tokens.spell(ids)
            # llama.cpp's names; its min_p (default 0.05) is off, as in the local sampler.
            # llama-server applies DRY under these names; a server without it ignores them.
            extra = {"top_k": params.top_k, "repeat_penalty": params.repetition_penalty,
                     "min_p": 0.0, "dry_multiplier": params.dry_multiplier,
                     "dry_base": params.dry_base,
                     "dry_allowed_length": params.dry_allowed_length}  # fmt: skip
        try:
            stream = await served.client.completions.create(
                model=served.model, prompt=prompt, stream=True,
                max_tokens=params.max_new_tokens, temperature=params.temperature,
                top_p=params.top_p, presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                seed=openai.omit if params.seed is None else params.seed,
                stop=None if served.vllm else list(STOP_TEXTS), extra_body=extra,
            )  # fmt: skip
        except openai.APIError as error:
            raise engine_error(error, self.url) from error
        finish: str | None = None
        text: list[str] = []
        token_ids: list[int] = []
        try:
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        token_ids += getattr(choice, "token_ids", None) or []  # vLLM's
                        finish = choice.finish_reason or finish
                        if choice.text:
                            text.append(choice.text)
                            yield choice.text
        except openai.APITimeoutError as error:
            raise engine_error(error, self.url) from error
        except openai.APIError as error:
            raise ReplyBroken(
                f"the model server at {self.url} stopped mid-reply: {_cause(error)}"
            ) from error
        if finish is None:
            raise ReplyBroken(f"the model server at {self.url} ended a reply without finishing it")
        yield StreamEnd(finish == "stop", token_ids or served.tokens.encode("".join(text)))


__all__ = ["OpenAIEngine", "RemoteReply", "ReplyBroken", "engine_error"]
