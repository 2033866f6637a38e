"""The llama.cpp backend (`BACKEND=llama_cpp`): the same GGUF, run by llama.cpp's CPU kernels.

It reads the packaged Q4_K_M file as it is (no bf16 conversion), needs no torch, and decodes
several times faster than transformers on a small CPU. Install it with `make install-llama`.

One llama.cpp context holds every sequence in a single shared ("unified") KV cache, so a
sequence can start as a copy of another at no cost (cells are shared, not copied):
- sequence 0 holds the analyst prompt's fixed head; a label copies it, runs only the user's
  text and the short tail, reads the two label scores and is dropped;
- a few sequences hold the KV of reply prompt openings (persona plus example exchange);
- every reply decodes in a sequence of its own, and `step_many` advances all of them, new
  prompts included, in one `llama_decode` call;
- a finished reply's sequence is kept for a while (LRU): the user's next prompt usually
  starts with it (same persona and examples, then the history that just grew by this
  exchange), so only the new message is run, not the whole conversation again.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import ModelLoadError
from engine.model import labelling
from engine.model.config import ModelConfig
from engine.model.label_head import LabelHead, gguf_identity, head_for
from engine.model.labelling import analyst_frame
from engine.model.model_files import default_cache_dir, resolve_gguf
from engine.model.prompt_ids import ReplyPrompter, chatml, continued_length, keep_head_and_tail
from engine.model.runner import ReplyStream, RunnerOptions
from engine.model.sampling import ReplySampler
from engine.types import ReplyRequest, Sentiment

try:
    import llama_cpp
except ImportError:  # the optional extra is not installed; load() says how to get it
    llama_cpp = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

HEAD_SEQUENCE = 0
OPENINGS_KEPT = 4  # reply prompt openings whose KV stays cached (LRU), sequences 1..4
# Finished replies whose KV stays for the user's next message (LRU). Past the opening they
# share, one holds ~70 cells per exchange (~40 prompt, ~30 reply). At 8, 32 users chatting at
# once had 2 of 3 follow-ups read their history again; a KV cache that runs full drops the
# least recently used first (_decode), so more than fit costs nothing.
CONVERSATIONS_KEPT = 32
MAX_SEQUENCES = 64  # all of the above plus labels and replies in flight
BATCH_TOKENS = 512  # tokens per llama_decode call; longer work is split over several
# New prompt tokens fed per step_many call, beyond one token per decoding reply. A prompt
# costs ~7 ms a token here, so this bounds a step at ~0.3 s with 8 replies decoding, and a
# label that arrives meanwhile waits for no more than that (vLLM calls it chunked prefill).
PREFILL_TOKENS_PER_STEP = 32
# Leading tokens after the opening compared first when looking for a slid conversation.
SLIDE_PROBE_TOKENS = 8
# Whether a conversation whose history window moved on is shifted rather than read again
# (benchmarks.speed.conversation --no-shift compares the two).
SHIFT_KEPT = True


def _forward_llama_log(level: int, text: bytes, _: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor at load; only its warnings and errors are worth showing.
    message = text.decode("utf-8", errors="replace").rstrip()
    if message:
        ours = {3: logging.WARNING, 4: logging.ERROR}.get(level, logging.DEBUG)
        if "failed to find a memory slot" in message:
            ours = logging.DEBUG  # a full KV cache: _decode makes room and says so if it can't
        log.log(ours, "llama.cpp: %s", message)


_LOG_CALLBACK = llama_cpp.llama_log_callback(_forward_llama_log) if llama_cpp else None


def tokenize(vocab: object, text: str) -> list[int]:
    """Plain text → ids with llama.cpp's tokenizer: no BOS added, and a control token's
    spelling stays text (parse_special=False), so that it cannot open a new chat role. The
    chat template's own control tokens come from `control_tokens` (prompt_ids.prompt_runs)."""
    raw = text.encode("utf-8")
    size = len(raw) + 8
    while True:
        buffer = (llama_cpp.llama_token * size)()
        count = llama_cpp.llama_tokenize(vocab, raw, len(raw), buffer, size, False, False)
        if count >= 0:
            return list(buffer[:count])
        size = -count


def token_piece(vocab: object, token: int, special: bool = False) -> bytes:
    """One token's bytes; a special token is spelled out only when `special` is True."""
    buffer = ctypes.create_string_buffer(64)
    count = llama_cpp.llama_token_to_piece(vocab, token, buffer, 64, 0, special)
    return buffer.raw[: max(count, 0)]


def control_tokens(vocab: object) -> dict[str, int]:
    """Every control token's spelling → its id (what parse_special=True would parse)."""
    control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    return {
        token_piece(vocab, token, special=True).decode("utf-8", errors="replace"): token
        for token in range(llama_cpp.llama_vocab_n_tokens(vocab))
        if llama_cpp.llama_vocab_get_attr(vocab, token) & control
    }


class GgufVocab:
    """A GGUF file's tokenizer alone: llama.cpp reads only the vocabulary (no weights), so a
    process that sends prompts to a remote engine gets the same ids without loading a model."""

    def __init__(self, path: Path) -> None:
        _require_package()
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not read the vocabulary of {path}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.specials = control_tokens(self._vocab)

    def encode(self, text: str) -> list[int]:
        return tokenize(self._vocab, text)

    def decode(self, ids: list[int]) -> str:
        """Ids → text as the runner decodes a reply (special tokens dropped)."""
        pieces = b"".join(token_piece(self._vocab, token) for token in ids)
        return pieces.decode("utf-8", errors="ignore")

    def spell(self, ids: list[int]) -> str:
        """Ids → the text that encodes back to them, special tokens written out."""
        pieces = b"".join(token_piece(self._vocab, token, special=True) for token in ids)
        return pieces.decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None


class ContextFull(RuntimeError):
    """No room left in the KV cache for a batch, even after dropping kept conversations."""


def _require_package() -> None:
    if llama_cpp is None:
        raise ModelLoadError(
            "BACKEND=llama_cpp needs the llama-cpp-python package: run `make install-llama` "
            "(it builds llama.cpp from source, ~6 minutes), or set BACKEND=transformers"
        )


class LlamaCppRunner:
    def __init__(
        self,
        model_path: Path,
        name: str,
        *,
        threads: int = 0,
        context_tokens: int = 8192,
        options: RunnerOptions | None = None,
        map_weights: bool = False,
    ) -> None:
        _require_package()
        if (options or RunnerOptions()).sentiment_method != "logits":
            raise ModelLoadError("BACKEND=llama_cpp labels by scores only: SENTIMENT_METHOD=logits")
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        self.name = name
        self.model_path = model_path
        self.options = options or RunnerOptions()
        self.context_tokens = context_tokens
        model_params = llama_cpp.llama_model_default_params()
        # Read into memory, not mapped: on CPUs where llama.cpp repacks the weights for its
        # matrix kernels, a mapping keeps both copies resident (the default tier's peak RSS
        # 2.04 GiB mapped, 1.43 GiB read: python -m benchmarks.speed.memory).
        if not map_weights:
            model_params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
        self._model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {model_path} (see the log above)")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_embd = llama_cpp.llama_model_n_embd(self._model)
        self.specials = control_tokens(self._vocab)
        # The calibration and "nothing felt" readout fitted for this very file, if any.
        self.label_head: LabelHead = head_for(gguf_identity(model_path, self.n_embd, self.n_vocab))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_tokens
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = min(MAX_SEQUENCES, llama_cpp.llama_max_parallel_sequences())
        params.kv_unified = True  # one pool of cells for all sequences, so copies share cells
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise ModelLoadError(f"llama.cpp could not create a {context_tokens}-token context")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._free = list(range(params.n_seq_max - 1, OPENINGS_KEPT, -1))  # pop() takes lowest
        self._openings: dict[tuple[int, ...], int] = {}  # opening ids → its sequence, LRU order
        # Finished sequence → (the tokens its KV holds, how many of them were its prompt).
        self._kept: dict[int, tuple[list[int], int]] = {}  # LRU order
        # Sequences that may hold cells of another sequence beyond the opening (the same first
        # words of two users): shifting their positions would move the other's too.
        self._shared: set[int] = set()
        self._can_shift = bool(llama_cpp.llama_memory_can_shift(self._memory))
        # The analyst prompt around the user's text; its head's KV goes into sequence 0 once.
        self._turn_start = self.specials.get("<|im_start|>", -1)  # where a message begins
        self._head, self._tail = analyst_frame(chatml, self.encode, self.specials)
        self._head_cached = False
        self._frame_heads: dict[tuple[str, str], tuple[int, list[int], list[int]]] = {}
        self.label_ids = (self._single_token(labelling.POSITIVE_WORD),
                          self._single_token(labelling.NEGATIVE_WORD))  # fmt: skip
        self.prompter = ReplyPrompter(
            chatml, self.encode, self.decode, self.specials,
            input_max_tokens=self.options.reply_input_max_tokens,
            history_max_tokens=self.options.history_max_tokens,
        )  # fmt: skip

    @classmethod
    def load(
        cls,
        spec: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int = 0,
        context_tokens: int = 8192,
        options: RunnerOptions | None = None,
    ) -> LlamaCppRunner:
        _require_package()
        path, name = resolve_gguf(spec, Path(cache_dir) if cache_dir else default_cache_dir())
        runner = cls(path, f"{name} on llama.cpp", threads=threads,
                     context_tokens=context_tokens, options=options)  # fmt: skip
        runner.warm_up()
        return runner

    def warm_up(self) -> None:
        self.tag(["hello"])

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            llama_cpp.llama_model_free(self._model)
            self._ctx = self._model = None

    # --- tokens ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return tokenize(self._vocab, text)

    def piece(self, token: int) -> bytes:
        return token_piece(self._vocab, token)

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.piece(token) for token in ids).decode("utf-8", errors="ignore")

    def is_stop(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _single_token(self, word: str) -> int:
        ids = self.encode(word)
        if len(ids) != 1:
            raise ModelLoadError(f"{self.name}: {word!r} is not a single token ({ids})")
        return ids[0]

    # --- sequences and the forward pass ----------------------------------------------------

    def _take_sequence(self) -> int:
        if not self._free:
            self._evict_kept()
        if not self._free:
            raise RuntimeError("llama.cpp: every sequence is in use")
        return self._free.pop()

    def _keep(self, seq: int, tokens: list[int], prompt_length: int) -> None:
        """Keep a finished reply's KV (`tokens` are exactly what it holds) for reuse."""
        self._kept[seq] = (tokens, prompt_length)
        while len(self._kept) > CONVERSATIONS_KEPT:
            self._evict_kept()

    def _evict_kept(self) -> bool:
        if not self._kept:
            return False
        seq = next(iter(self._kept))  # least recently used
        del self._kept[seq]
        self._drop_sequence(seq)
        return True

    def _continued(self, ids: list[int]) -> tuple[int, int]:
        """The kept exchange that `ids` continues furthest (prompt_ids.continued_length), and
        how many leading ids it holds; (-1, 0) if none. Furthest, not first: users who began
        with the same words hold the same prompt, and only one of them holds this user's
        reply."""
        best = (-1, 0)
        for seq, (tokens, prompt_length) in reversed(self._kept.items()):
            common = continued_length(ids, tokens, prompt_length)
            if common > best[1]:
                best = (seq, common)
        return best

    def _drop_sequence(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self._shared.discard(seq)
        self._free.append(seq)

    def _forward(
        self, items: Sequence[tuple[int, list[int], int]], scores: Sequence[bool] = ()
    ) -> list[np.ndarray]:
        """Run each (sequence, tokens, first position) and return the scores after each
        item's last token (an empty array where `scores` says False: a prompt's middle).
        Items share llama_decode calls of up to BATCH_TOKENS tokens."""
        results: list[np.ndarray] = [np.empty(0, np.float32)] * len(items)
        batch = self._batch
        filled = 0
        outputs: list[tuple[int, int]] = []  # (item, slot in the batch) to read after decode
        for index, (seq, tokens, position) in enumerate(items):
            wanted = scores[index] if scores else True
            for offset, token in enumerate(tokens):
                if filled == BATCH_TOKENS:
                    self._decode(filled, outputs, results)
                    filled, outputs = 0, []
                batch.token[filled] = token
                batch.pos[filled] = position + offset
                batch.n_seq_id[filled] = 1
                batch.seq_id[filled][0] = seq
                last = wanted and offset == len(tokens) - 1
                batch.logits[filled] = last
                if last:
                    outputs.append((index, filled))
                filled += 1
        if filled:
            self._decode(filled, outputs, results)
        return results

    def _decode(
        self, filled: int, outputs: list[tuple[int, int]], results: list[np.ndarray]
    ) -> None:
        self._batch.n_tokens = filled
        code = llama_cpp.llama_decode(self._ctx, self._batch)
        # 1 = no room in the KV cache (nothing was computed): kept conversations make room.
        while code == 1 and self._evict_kept():
            code = llama_cpp.llama_decode(self._ctx, self._batch)
        if code == 1:
            raise ContextFull(
                f"llama.cpp's context is full ({self.context_tokens} tokens shared by all "
                "replies in flight); raise LLAMA_CONTEXT_TOKENS or lower MAX_ACTIVE_REPLIES"
            )
        if code != 0:
            raise RuntimeError(f"llama_decode failed with code {code}")
        for index, slot in outputs:
            row = llama_cpp.llama_get_logits_ith(self._ctx, slot)
            results[index] = np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()

    # --- sentiment ------------------------------------------------------------------------

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        if not self._head_cached:
            self._forward([(HEAD_SEQUENCE, self._head, 0)])
            self._head_cached = True
        results: list[Sentiment] = []
        room = max(1, len(self._free) - 1)
        for start in range(0, len(texts), room):
            results += self._tag_some(texts[start : start + room])
        return results

    def _tag_some(self, texts: Sequence[str]) -> list[Sentiment]:
        sequences: list[int] = []
        try:
            items = []
            for text in texts:
                seq = self._take_sequence()
                sequences.append(seq)
                llama_cpp.llama_memory_seq_cp(self._memory, HEAD_SEQUENCE, seq, -1, -1)
                user = keep_head_and_tail(self.encode(text), self.options.sentiment_max_tokens)
                items.append((seq, user + self._tail, len(self._head)))
            rows = self._forward(items)
        finally:
            for seq in sequences:
                self._drop_sequence(seq)
        positive, negative = self.label_ids
        return [
            labelling.sentiment_from_scores(
                self.label_head, float(row[positive]), float(row[negative]), text, state=row
            )
            for row, text in zip(rows, texts, strict=True)
        ]

    # --- label features, for fitting label heads offline (scripts.fitting.label_features) ------

    def single_token_or_none(self, word: str) -> int | None:
        ids = self.encode(word)
        return ids[0] if len(ids) == 1 else None

    def label_rows(
        self, texts: Sequence[str], frame: str, languages: Sequence[str]
    ) -> list[np.ndarray]:
        """Per text, the whole row of next-token scores after the label frame `frame`
        (labelling.FRAMES) in that text's language."""
        items, sequences = [], []
        try:
            for text, language in zip(texts, languages, strict=True):
                seq, head, tail = self._frame_head(frame, language)
                sequences.append(work := self._take_sequence())
                llama_cpp.llama_memory_seq_cp(self._memory, seq, work, -1, -1)
                user = keep_head_and_tail(self.encode(text), self.options.sentiment_max_tokens)
                items.append((work, user + tail, len(head)))
            return self._forward(items)
        finally:
            for work in sequences:
                self._drop_sequence(work)

    def _frame_head(self, frame: str, language: str) -> tuple[int, list[int], list[int]]:
        key = (frame, language)
        if key not in self._frame_heads:
            head, tail = analyst_frame(
                chatml, self.encode, self.specials, labelling.FRAMES[frame][language]
            )
            seq = self._take_sequence()
            self._forward([(seq, head, 0)], [False])
            self._frame_heads[key] = (seq, head, tail)
        return self._frame_heads[key]

    # --- replies --------------------------------------------------------------------------

    def start_reply(self, request: ReplyRequest) -> LlamaCppReply:
        prompt = self.prompter.build(request)
        seq = self._take_sequence()
        source, common = self._continued(prompt.ids)
        cached = min(common, len(prompt.ids) - 1)  # the last prompt token must run: its scores
        if cached <= prompt.opening and (slid := self._slide_kept(prompt.ids, prompt.opening)):
            self._free.append(seq)  # the slid conversation's own sequence serves the reply
            seq, cached = slid
            sampler = ReplySampler(request.params, prompt.avoid)
            return LlamaCppReply(self, seq, prompt.ids, cached, sampler)
        try:
            if cached > prompt.opening:
                llama_cpp.llama_memory_seq_cp(self._memory, source, seq, 0, cached)
                if source in self._shared:  # what it shares, the copy shares too
                    self._shared.add(seq)
                if common > self._kept[source][1]:
                    # It goes on into the kept reply: the same conversation one message later,
                    # which supersedes it. A prompt that stops where the kept one did is
                    # another user's same first words: they share the cells, and it stays.
                    del self._kept[source]
                    self._drop_sequence(source)
                else:  # both now hold these cells: neither may shift them (_slide_kept)
                    self._shared.update((source, seq))
            elif prompt.opening:
                source = self._opening(prompt.ids[: prompt.opening])
                llama_cpp.llama_memory_seq_cp(self._memory, source, seq, -1, -1)
                cached = prompt.opening
            else:
                cached = 0
        except BaseException:
            self._drop_sequence(seq)
            raise
        sampler = ReplySampler(request.params, prompt.avoid)
        return LlamaCppReply(self, seq, prompt.ids, cached, sampler)

    def _slide_kept(self, ids: list[int], opening: int) -> tuple[int, int] | None:
        """A conversation whose history window moved on: the kept exchange that `ids` continues
        once its oldest turns (whole messages right after the opening) are left out. Those
        turns are removed from its KV and the rest is shifted down to follow the opening (the
        positional encoding is rotated in place, as llama.cpp's context shift does), so the
        prompt is not read again from the opening: without this, every message of a chat
        longer than HISTORY_TURNS would re-read its whole history. Returns (the sequence, now
        this reply's, and how many leading ids it holds), or None."""
        if not opening or not self._can_shift or not SHIFT_KEPT:
            return None
        probe = ids[opening : opening + SLIDE_PROBE_TOKENS]
        for seq, (tokens, prompt_length) in reversed(self._kept.items()):
            if seq in self._shared or tokens[:opening] != ids[:opening]:
                continue
            for start in range(opening + 1, prompt_length):
                if tokens[start] != self._turn_start or tokens[start : start + len(probe)] != probe:
                    continue
                drop = start - opening
                rest = tokens[:opening] + tokens[start:]
                common = continued_length(ids, rest, prompt_length - drop)
                if common <= opening:
                    continue
                del self._kept[seq]
                cached = min(common, len(ids) - 1)
                llama_cpp.llama_memory_seq_rm(self._memory, seq, opening, start)
                llama_cpp.llama_memory_seq_add(self._memory, seq, start, -1, -drop)
                llama_cpp.llama_memory_seq_rm(self._memory, seq, cached, -1)
                return seq, cached
        return None

    def _opening(self, ids: list[int]) -> int:
        key = tuple(ids)
        seq = self._openings.pop(key, None)
        if seq is None:
            if len(self._openings) < OPENINGS_KEPT:
                seq = 1 + len(self._openings)
            else:  # reuse the least recently used opening's sequence
                seq = self._openings.pop(next(iter(self._openings)))
                llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
            try:
                self._forward([(seq, ids, 0)])
            except BaseException:
                llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
                raise
        self._openings[key] = seq  # most recently used last
        return seq

    def step_many(self, streams: Sequence[ReplyStream]) -> list[str | None]:
        replies = [stream for stream in streams if isinstance(stream, LlamaCppReply)]
        if len(replies) != len(streams):
            raise TypeError("step_many takes only this runner's replies")
        live = [reply for reply in replies if not reply.done]
        # Decoding replies feed their one token; prompts share the prefill budget, oldest first.
        budget = PREFILL_TOKENS_PER_STEP
        feeds: list[tuple[LlamaCppReply, list[int]]] = []
        for reply in sorted(live, key=lambda reply: len(reply.pending) > 1):
            if len(reply.pending) == 1:
                feeds.append((reply, reply.pending))
            elif budget > 0:
                feeds.append((reply, reply.pending[:budget]))
                budget -= len(feeds[-1][1])
        try:
            try:
                rows = self._feed(feeds)
            except ContextFull:
                feeds = self._without_new_prompts(feeds)
                rows = self._feed(feeds)
        except BaseException:
            for reply in live:  # their KV may be half written
                reply.close()
            raise
        deltas: dict[int, str | None] = {id(reply): "" for reply in live}  # "": no text yet
        for reply in live:
            if reply.done:  # a prompt that did not fit: its reply ends, empty
                deltas[id(reply)] = None
        for (reply, tokens), row in zip(feeds, rows, strict=True):
            if len(tokens) < len(reply.pending):  # a prompt's middle: more next step
                reply.position += len(tokens)
                reply.pending = reply.pending[len(tokens) :]
            else:
                deltas[id(reply)] = reply.accept(row)
        return [deltas.get(id(reply)) for reply in replies]

    def _feed(self, feeds: list[tuple[LlamaCppReply, list[int]]]) -> list[np.ndarray]:
        return self._forward(
            [(reply.seq, tokens, reply.position) for reply, tokens in feeds],
            [len(tokens) == len(reply.pending) for reply, tokens in feeds],
        )

    def _without_new_prompts(
        self, feeds: list[tuple[LlamaCppReply, list[int]]]
    ) -> list[tuple[LlamaCppReply, list[int]]]:
        """The cache is full: the prompts still being read give way (their users get an error
        reply) so that the replies already decoding can finish. Raises ContextFull again
        when there are none to drop."""
        prompts = [reply for reply, _ in feeds if len(reply.pending) > 1]
        if not prompts:
            raise ContextFull(f"llama.cpp's context is full ({self.context_tokens} tokens)")
        log.warning("the KV cache is full: %d new prompt(s) dropped", len(prompts))
        for reply in prompts:
            reply.close()
        kept = [(reply, tokens) for reply, tokens in feeds if not reply.done]
        for reply, _ in kept:  # a failed decode writes nothing, but make sure of it
            llama_cpp.llama_memory_seq_rm(self._memory, reply.seq, reply.position, -1)
        return kept


class LlamaCppReply:
    """One reply decoding in its own llama.cpp sequence."""

    def __init__(
        self,
        runner: LlamaCppRunner,
        seq: int,
        prompt_ids: list[int],
        cached: int,
        sampler: ReplySampler,
    ) -> None:
        self.runner = runner
        self.seq = seq
        self.sampler = sampler
        self.params = sampler.params
        self.prompt_ids = prompt_ids
        self.position = cached  # tokens of this sequence already in the KV cache
        self.pending = prompt_ids[cached:]  # what the next forward feeds
        self.generated: list[int] = []
        self.text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.finished = False
        self.done = False

    def step(self) -> str | None:
        return self.runner.step_many([self])[0]

    def accept(self, logits: np.ndarray) -> str | None:
        self.position += len(self.pending)
        token = self.sampler(logits, self.generated)
        if self.runner.is_stop(token):
            self.finished = True
            return self._finish()
        self.generated.append(token)
        self.pending = [token]
        delta = self.text.decode(self.runner.piece(token))  # "" until a character is whole
        if len(self.generated) >= self.params.max_new_tokens:
            return (delta + (self._finish() or "")) or None
        return delta

    def _finish(self) -> str | None:
        tail = self.text.decode(b"", final=True)
        if not self.done:  # a complete reply: its KV may start this user's next prompt
            self.done = True
            held = (self.prompt_ids + self.generated)[: self.position]
            self.runner._keep(self.seq, held, len(self.prompt_ids))
        return tail or None

    def close(self) -> None:
        if not self.done:  # cancelled or failed: nothing worth keeping
            self.done = True
            self.runner._drop_sequence(self.seq)


def load(config: ModelConfig, options: RunnerOptions) -> LlamaCppRunner:
    """The backend plugin's entry (engine/model/backends/__init__.py)."""
    return LlamaCppRunner.load(
        config.model,
        cache_dir=config.cache_dir,
        threads=config.threads,
        context_tokens=config.llama_context_tokens,
        options=options,
    )
