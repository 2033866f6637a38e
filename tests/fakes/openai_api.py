"""A loopback fake of an OpenAI-compatible serving engine that the real `openai` client talks to.

It answers the way vLLM does (`owned_by: "vllm"`, token-id prompts, several prompts per
request, `logprob_token_ids`, `return_tokens_as_token_ids`, `priority`, `/tokenize`) or the
way llama.cpp's Python server does (text prompts, one per request, `top_logprobs` keyed by the
token's text). Labels get a probability from the text (tests.scripted.scripted_p_positive);
replies stream scripted chunks over SSE. A test can script the next calls of a route to fail
(429, 503, 401), to answer slowly, or to die in the middle of a stream; every call is
recorded, and so is a client closing a stream early.

Tokens are those of `fake_tokens()`: the chat markers and the two label words are single ids,
every other character its own id, so the fake can read what a prompt of ids says. The server
parses the chat markers in a text prompt (`server_encode`, as llama.cpp's does); the bot's
tokenizer encodes text plainly (`fake_tokens().encode`: a marker's spelling is characters).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.model.backends.openai_api.tokens import Tokens
from engine.model.labelling import (
    ANALYST_USER_HEAD,
    ANALYST_USER_TAIL,
    NEGATIVE_WORD,
    POSITIVE_WORD,
)
from tests.fakes.base import RecordingServer
from tests.scripted import scripted_p_positive

JSON = dict[str, Any]

SPECIAL = {"<|im_start|>": 1, "<|im_end|>": 2, "<|endoftext|>": 3}
WORDS = {POSITIVE_WORD: 10, NEGATIVE_WORD: 11}
_NAMED = {**SPECIAL, **WORDS}
_PIECES = re.compile("|".join(re.escape(name) for name in _NAMED) + "|.", re.DOTALL)
_PLAIN_PIECES = re.compile("|".join(re.escape(name) for name in WORDS) + "|.", re.DOTALL)
_CHAR_BASE = 1000


def _encode(text: str, pattern: re.Pattern[str] = _PIECES) -> list[int]:
    pieces = pattern.findall(text)
    return [_NAMED[piece] if piece in _NAMED else _CHAR_BASE + ord(piece) for piece in pieces]


def server_encode(text: str) -> list[int]:
    """How the fake server reads a text prompt: the chat markers' spellings are parsed."""
    return _encode(text)


def _plain(text: str) -> list[int]:
    return _encode(text, _PLAIN_PIECES)


_NAMES = {value: name for name, value in _NAMED.items()}


def _spell(ids: list[int], specials: bool = True) -> str:
    pieces = []
    for token in ids:
        if token >= _CHAR_BASE:
            pieces.append(chr(token - _CHAR_BASE))
        elif token in _NAMES and (specials or token not in SPECIAL.values()):
            pieces.append(_NAMES[token])
    return "".join(pieces)


def fake_tokens() -> Tokens:
    return Tokens("fake tokenizer", _plain, lambda ids: _spell(ids, specials=False), SPECIAL)


def label_logprobs(text: str) -> dict[str, float]:
    """The fake model's answer distribution after an analyst prompt: a few tokens, the two
    label words first, as logprobs."""
    p = scripted_p_positive(analysed_text(text))
    return {POSITIVE_WORD: math.log(p * 0.9), NEGATIVE_WORD: math.log((1 - p) * 0.9),
            "正": math.log(0.05), "积极": math.log(0.03), "positive": math.log(0.02)}  # fmt: skip


def analysed_text(prompt: str) -> str:
    """The user's text inside an analyst prompt (the whole prompt if it is not one)."""
    start, end = prompt.find(ANALYST_USER_HEAD), prompt.rfind(ANALYST_USER_TAIL)
    return prompt[start + len(ANALYST_USER_HEAD) : end] if 0 <= start < end else prompt


@dataclass(frozen=True)
class Fault:
    status: int = 0  # answer with this HTTP status instead (0: answer normally)
    delay_s: float = 0.0  # wait this long first
    die_after: int | None = None  # stream this many chunks, then drop the connection


@dataclass
class Call:
    route: str
    body: JSON
    status: int = 200
    at: float = field(default_factory=time.monotonic)
    disconnected: bool = False  # the client closed the stream before its end
    chunks_sent: int = 0
    fault: Fault | None = None

    @property
    def is_label(self) -> bool:
        return self.route == "completions" and self.body.get("max_tokens") == 1


class FakeOpenAIServer(RecordingServer[Call, Fault]):
    """Serve /v1/models, /v1/completions and /tokenize on 127.0.0.1; use as an async context."""

    def __init__(
        self,
        *,
        vllm: bool = True,
        api_key: str | None = None,
        models: tuple[str, ...] = ("fake-qwen",),
        reply: tuple[str, ...] = ("Hello", " there", ", friend", "!"),
        finish_reason: str = "stop",
        chunk_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.vllm = vllm
        self.api_key = api_key
        self.models = models
        self.reply = reply
        self.finish_reason = finish_reason
        self.chunk_delay_s = chunk_delay_s
        self.label_top: dict[str, float] | None = None  # replaces label_logprobs() when set
        # "completions": top_logprobs as {token: logprob} (vLLM, llama-cpp-python); "content":
        # the chat API's shape, which llama.cpp's llama-server sends on /v1/completions too.
        self.logprobs_shape = "completions"
        self.tokenize_offset = 0  # added to every id /tokenize returns (a different tokenizer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/tokenize", self._tokenize)
        await self.serve(app)

    def describe(self, call: Call) -> str:
        return f"{call.route}({call.status})"

    # --- what tests use -----------------------------------------------------------------------

    def fail_next(self, route: str, fault: Fault, times: int = 1) -> None:
        """The next `times` calls of `route` ("models", "completions", "labels", "replies")."""
        self.script_fault(route, fault, times)

    def label_calls(self) -> list[Call]:
        return [call for call in self.calls if call.is_label]

    def reply_calls(self) -> list[Call]:
        return [call for call in self.calls if call.route == "completions" and not call.is_label]

    # --- the routes ---------------------------------------------------------------------------

    async def _begin(self, request: web.Request, route: str, body: JSON, *keys: str) -> Call:
        """Record the call and apply its scripted fault: a delay, then maybe an error status
        (call.status), or a stream that dies (call.fault)."""
        call = Call(route, body)
        self.calls.append(call)
        call.fault = next((f for key in (*keys, route) if (f := self.take_fault(key))), None)
        if call.fault and call.fault.delay_s:
            await asyncio.sleep(call.fault.delay_s)
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            call.status = 401
        elif call.fault and call.fault.status:
            call.status = call.fault.status
        return call

    async def _models(self, request: web.Request) -> web.Response:
        call = await self._begin(request, "models", {})
        if call.status != 200:
            return _status(call.status)
        owner = "vllm" if self.vllm else "me"
        data = [{"id": name, "object": "model", "created": 0, "owned_by": owner}
                for name in self.models]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        call = await self._begin(request, "tokenize", body)
        if call.status != 200:
            return _status(call.status)
        if not self.vllm:
            raise web.HTTPNotFound()
        ids = [token + self.tokenize_offset for token in _encode(body["prompt"])]
        return web.json_response({"tokens": ids, "count": len(ids)})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        kind = "labels" if body.get("max_tokens") == 1 else "replies"
        call = await self._begin(request, "completions", body, kind)
        if call.status != 200:
            return _status(call.status)
        prompts = body["prompt"]
        if self.vllm:
            prompts = prompts if prompts and isinstance(prompts[0], list) else [prompts]
            texts = [_spell(ids) if isinstance(ids, list) else ids for ids in prompts]
        else:  # llama.cpp's Python server: one text prompt
            if not isinstance(prompts, str):
                return _status(422)
            texts = [prompts]
        if body.get("stream"):
            return await self._stream(request, call)
        return web.json_response({"id": "cmpl-fake", "object": "text_completion",
                                  "choices": [self._label_choice(i, text, body)
                                              for i, text in enumerate(texts)]})  # fmt: skip

    def _label_choice(self, index: int, text: str, body: JSON) -> JSON:
        top = dict(self.label_top or label_logprobs(text))
        wanted = body.get("logprob_token_ids") if self.vllm else None
        if wanted:
            names = {value: name for name, value in WORDS.items()}
            top = {names[token]: top.get(names[token], -30.0) for token in wanted}
        else:
            top = dict(sorted(top.items(), key=lambda item: -item[1])[: body.get("logprobs") or 0])
        if self.vllm and body.get("return_tokens_as_token_ids"):
            top = {f"token_id:{_encode(name)[0]}": value for name, value in top.items()}
        best = max(top, key=lambda key: top[key]) if top else ""
        logprobs: JSON = {"tokens": [best], "token_logprobs": [top.get(best)],
                          "top_logprobs": [top], "text_offset": [0]}  # fmt: skip
        if self.logprobs_shape == "content":
            listed = [{"id": _encode(token)[0], "token": token, "logprob": value, "bytes": []}
                      for token, value in top.items()]  # fmt: skip
            logprobs = {"content": [{**listed[0], "top_logprobs": listed}]} if listed else {}
        return {"index": index, "text": best, "finish_reason": "length", "logprobs": logprobs}

    async def _stream(self, request: web.Request, call: Call) -> web.StreamResponse:
        fault = call.fault
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = [*self.reply][: call.body.get("max_tokens")]
        finish = self.finish_reason if len(pieces) == len(self.reply) else "length"
        try:
            for index, piece in enumerate([*pieces, ""]):
                if fault and fault.die_after is not None and index == fault.die_after:
                    assert request.transport is not None
                    request.transport.abort()  # the server process died: no end of stream
                    return response
                done = index == len(pieces)
                choice: JSON = {"index": 0, "text": piece,
                                "finish_reason": finish if done else None}  # fmt: skip
                if self.vllm and not done:
                    choice["token_ids"] = _encode(piece)
                await response.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                call.chunks_sent += 1
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            call.disconnected = True
            raise
        return response


def _status(status: int) -> web.Response:
    body = {"error": {"message": f"scripted {status}", "type": "scripted", "code": status}}
    return web.json_response(body, status=status)
