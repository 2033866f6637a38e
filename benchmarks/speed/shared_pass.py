"""Sharing the label pass and the reply pass on llama.cpp: what it could save, and what it costs.

    python -m benchmarks.speed.shared_pass profile [--messages 8] [--max-new-tokens 48]
    python -m benchmarks.speed.shared_pass accuracy [--rows 100]
    python -m benchmarks.speed.shared_pass chunks [--messages 8] [--repeats 3]

Today the user's message is read twice: once in the analyst frame (the label), once in the
reply prompt (persona, examples, history, the tone note, then the message). `profile` drives
the runner directly (no service, no store) through one user's conversation
(benchmarks.speed.conversation's messages) and reports, per message, the tokens and ms of the
label pass, of the reply prompt's prefill (the chunked steps up to the first token) and of
the first decode step. Then it runs the same conversation the shared way, a prototype built
here from the runner's sequences: the reply context up to the end of the user's message is
read once; a copy of that sequence (llama_memory_seq_cp, no cells copied) gets a short label
question and the assistant header, and the two label words' scores are read there; the
original continues with the tone note and the assistant header. That needs the note *after*
the message (the bot's layout has it before, so the message's KV depends on the label). Both
ways greedy, the same messages.

`accuracy` reads the in-context label on evaluation rows (benchmarks/results/data/{en,zh}.jsonl,
the first --rows of each; no history: persona and examples, then the message) against the
analyst frame on the same rows: AUC of the raw score difference (positive word minus
negative word), and of the shipped head's p_positive for the analyst frame.

`chunks` times a lone reply's prompt tail fed in one llama_decode call against the
PREFILL_TOKENS_PER_STEP chunks step_many cuts it into (alternated, the same prompts).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import auc, bench_settings, read_jsonl, runner_factory, table, write_json
from benchmarks.speed.conversation import CONVERSATION
from engine.chat import prompts
from engine.language import detect_language
from engine.model.prompt_ids import chatml, encode_messages, keep_head_and_tail
from engine.types import GenerationParams, Tone, Turn

# The label question put on the copy of the reply context, in the language of the label words.
QUESTION = "判断用户最后这条消息的情感是正面还是负面。只输出“正面”或“负面”。"
GREEDY = GenerationParams(max_new_tokens=48, temperature=0.0, repetition_penalty=1.0)
DATA = Path("benchmarks/results/data")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


# --- the shared layout: the tone note after the message --------------------------------------


def shared_messages(text: str, history: list[tuple[str, Tone, str]]) -> list[dict[str, str]]:
    """Persona, the mixed examples, the history, then the message; each earlier message is
    followed by its tone note (so the message's KV does not depend on its label)."""
    language = detect_language(text)
    messages = [{"role": "system", "content": prompts.PERSONA[language]}]
    shown = [(q, tone, a) for tone, (q, a) in prompts.EXAMPLES[language].items()] + history
    for question, tone, answer in shown:
        messages += [
            {"role": "user", "content": question},
            {"role": "system", "content": prompts.TONES[detect_language(question)][tone]},
            {"role": "assistant", "content": answer},
        ]
    return [*messages, {"role": "user", "content": text}]


def _ids(runner: Any, messages: list[dict[str, str]], generation: bool) -> list[int]:
    return encode_messages(chatml, runner.encode, runner.specials, messages, generation)


def _tail(runner: Any, context: list[dict[str, str]], turn: dict[str, str]) -> list[int]:
    before = _ids(runner, context, False)
    after = _ids(runner, [*context, turn], True)
    assert after[: len(before)] == before, "the tail must continue the context's ids"
    return after[len(before) :]


def label_tail(runner: Any, context: list[dict[str, str]]) -> list[int]:
    return _tail(runner, context, {"role": "system", "content": QUESTION})


def note_tail(runner: Any, context: list[dict[str, str]], tone: Tone) -> list[int]:
    language = detect_language(context[-1]["content"])
    return _tail(runner, context, {"role": "system", "content": prompts.TONES[language][tone]})


# --- profile ----------------------------------------------------------------------------------


def profile_current(runner: Any, texts: list[str], max_new: int) -> list[dict[str, Any]]:
    """The bot's way, through the runner's own methods: tag(), then start_reply + step_many."""
    params = GenerationParams(**{**GREEDY.__dict__, "max_new_tokens": max_new})
    history: tuple[Turn, ...] = ()
    rows = []
    for text in texts:
        start = time.perf_counter()
        (sentiment,) = runner.tag([text])
        label_ms = _ms(start)
        label_tokens = len(keep_head_and_tail(runner.encode(text), 10**6)) + len(runner._tail)
        request = prompts.reply_request(sentiment.tone, text, history, params)
        start = time.perf_counter()
        reply = runner.start_reply(request)
        start_ms = _ms(start)
        prefill_tokens = len(reply.pending)
        steps: list[float] = []
        while not reply.done:
            step = time.perf_counter()
            reply.step()
            steps.append(_ms(step))
        chunks = -(-prefill_tokens // 32)  # PREFILL_TOKENS_PER_STEP
        rows.append({
            "text": text, "tone": sentiment.tone, "label_tokens": label_tokens,
            "label_ms": label_ms, "start_ms": start_ms, "prefill_tokens": prefill_tokens,
            "prefill_ms": sum(steps[:chunks]), "first_token_ms": label_ms + _ms(start)
            - sum(steps[chunks:]), "decode_ms": float(np.median(steps[chunks:])) if
            len(steps) > chunks else None, "reply": runner.decode(reply.generated),
            "generated": list(reply.generated),
        })  # fmt: skip
        history += (Turn("user", text, sentiment.tone), Turn("assistant", rows[-1]["reply"]))
    return rows


def profile_shared(runner: Any, texts: list[str], max_new: int) -> list[dict[str, Any]]:
    """The prototype: one sequence holds the conversation; the label is read on a copy."""
    from engine.model.backends.llama_cpp import llama_cpp

    memory, head = runner._memory, runner.label_head
    positive, negative = runner.label_ids
    seq = runner._take_sequence()
    held: list[int] = []
    history: list[tuple[str, Tone, str]] = []
    rows = []
    try:
        for text in texts:
            context = shared_messages(text, history)
            ids = _ids(runner, context, False)
            common = 0
            while common < min(len(ids), len(held)) and ids[common] == held[common]:
                common += 1
            llama_cpp.llama_memory_seq_rm(memory, seq, common, -1)
            start = time.perf_counter()
            runner._forward([(seq, ids[common:], common)], [False])
            context_ms = _ms(start)
            question = label_tail(runner, context)
            fork = runner._take_sequence()
            try:
                llama_cpp.llama_memory_seq_cp(memory, seq, fork, -1, -1)
                (row,) = runner._forward([(fork, question, len(ids))])
            finally:
                runner._drop_sequence(fork)
            label_ms = _ms(start)
            sentiment = head.sentiment(float(row[positive]), float(row[negative]), text, row)
            note = note_tail(runner, context, sentiment.tone)
            (row,) = runner._forward([(seq, note, len(ids))])
            first_ms = _ms(start)
            held = ids + note
            generated: list[int] = []
            steps = []
            while len(generated) < max_new:
                token = int(np.argmax(row))
                if runner.is_stop(token):
                    break
                generated.append(token)
                step = time.perf_counter()
                (row,) = runner._forward([(seq, [token], len(held))])
                steps.append(_ms(step))
                held.append(token)
            reply = runner.decode(generated)
            rows.append({
                "text": text, "tone": sentiment.tone, "context_tokens": len(ids) - common,
                "question_tokens": len(question), "note_tokens": len(note),
                "label_ms": label_ms, "context_ms": context_ms, "first_token_ms": first_ms,
                "decode_ms": float(np.median(steps)) if steps else None, "reply": reply,
            })  # fmt: skip
            history.append((text, sentiment.tone, reply))
    finally:
        runner._drop_sequence(seq)
    return rows


def profile(runner: Any, args: argparse.Namespace) -> dict[str, Any]:
    texts = list(CONVERSATION[: args.messages])
    current = profile_current(runner, texts, args.max_new_tokens)
    if args.current_only:
        print(table(["#", "label tok", "label ms", "start_reply ms", "prefill tok", "prefill ms",
                     "decode ms", "first token ms"],
                    [[i + 1, c["label_tokens"], c["label_ms"], c["start_ms"], c["prefill_tokens"],
                      c["prefill_ms"], c["decode_ms"], c["first_token_ms"]]
                     for i, c in enumerate(current)], digits=0))  # fmt: skip
        return {"current": current}
    shared = profile_shared(runner, texts, args.max_new_tokens)
    print(table(
        ["#", "label tok", "label ms", "prefill tok", "prefill ms", "decode ms", "first token ms",
         "| shared: msg tok", "question tok", "note tok", "label ms", "first token ms"],
        [[i + 1, c["label_tokens"], c["label_ms"], c["prefill_tokens"], c["prefill_ms"],
          c["decode_ms"], c["first_token_ms"], s["context_tokens"], s["question_tokens"],
          s["note_tokens"], s["label_ms"], s["first_token_ms"]]
         for i, (c, s) in enumerate(zip(current, shared, strict=True))], digits=0))  # fmt: skip
    later = slice(1, None)  # message 1 reads the opening in the prototype; left out
    summary = {}
    for name, rows in (("current", current), ("shared", shared)):
        summary[name] = {key: float(np.median([r[key] for r in rows[later]]))
                         for key in ("label_ms", "first_token_ms")}  # fmt: skip
    print(f"messages 2-{len(texts)}, p50: current label {summary['current']['label_ms']:.0f} ms, "
          f"first token {summary['current']['first_token_ms']:.0f} ms; shared label "
          f"{summary['shared']['label_ms']:.0f} ms, first token "
          f"{summary['shared']['first_token_ms']:.0f} ms")  # fmt: skip
    return {"current": current, "shared": shared, "summary": summary}


# --- accuracy ---------------------------------------------------------------------------------


def in_context_scores(runner: Any, texts: list[str], batch: int = 8) -> list[float]:
    from engine.model.backends.llama_cpp import llama_cpp

    positive, negative = runner.label_ids
    openings: dict[str, tuple[int, list[int]]] = {}
    scores: list[float] = []
    try:
        for start in range(0, len(texts), batch):
            items, forks = [], []
            try:
                for text in texts[start : start + batch]:
                    text = runner.decode(keep_head_and_tail(runner.encode(text), 256))
                    context = shared_messages(text, [])
                    opening = _ids(runner, context[:-1], False)
                    language = detect_language(text)
                    if language not in openings:
                        openings[language] = (runner._take_sequence(), opening)
                        runner._forward([(openings[language][0], opening, 0)], [False])
                    source, cached = openings[language]
                    ids = _ids(runner, context, False) + label_tail(runner, context)
                    assert ids[: len(cached)] == cached
                    forks.append(fork := runner._take_sequence())
                    llama_cpp.llama_memory_seq_cp(runner._memory, source, fork, -1, -1)
                    items.append((fork, ids[len(cached) :], len(cached)))
                rows = runner._forward(items)
            finally:
                for fork in forks:
                    runner._drop_sequence(fork)
            scores += [float(row[positive] - row[negative]) for row in rows]
    finally:
        for seq, _ in openings.values():
            runner._drop_sequence(seq)
    return scores


def accuracy(runner: Any, args: argparse.Namespace) -> dict[str, Any]:
    positive, negative = runner.label_ids
    out: dict[str, Any] = {}
    lines = []
    for language in ("en", "zh"):
        rows = read_jsonl(DATA / f"{language}.jsonl")[: args.rows]
        texts = [row["text"] for row in rows]
        truth = np.array([row["label"] == "positive" for row in rows], dtype=bool)
        analyst = []
        for start in range(0, len(texts), 8):
            part = texts[start : start + 8]
            rows_of_part = runner.label_rows(part, "analyst", ["zh"] * len(part))
            analyst += [float(r[positive] - r[negative]) for r in rows_of_part]
        shipped = [s.p_positive for s in runner.tag(texts)]
        context = in_context_scores(runner, texts)
        figures = {
            "analyst_raw_auc": auc(truth, np.array(analyst)),
            "analyst_head_auc": auc(truth, np.array(shipped)),
            "in_context_raw_auc": auc(truth, np.array(context)),
            "analyst_raw_acc": float(np.mean((np.array(analyst) > 0) == truth)),
            "in_context_raw_acc": float(np.mean((np.array(context) > 0) == truth)),
        }
        out[language] = {"rows": len(rows), **figures, "analyst": analyst, "shipped": shipped,
                         "in_context": context}  # fmt: skip
        lines.append([language, len(rows), *figures.values()])
    print(table(["lang", "rows", "analyst raw AUC", "analyst head AUC", "in-context raw AUC",
                 "analyst acc@0", "in-context acc@0"], lines, digits=3))  # fmt: skip
    return out


# --- chunks: one reply's prompt in one llama_decode call or in PREFILL_TOKENS_PER_STEP chunks ---


def chunks(runner: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The same reply prompts (the conversation's second message on, opening cached), fed to a
    fresh copy of the opening either whole or cut as step_many cuts a lone prompt; alternated,
    so both ways see the same machine. Then greedy replies the bot's way with the cut as
    configured, to compare tokens."""
    from engine.model.backends import llama_cpp as module

    params = GenerationParams(**{**GREEDY.__dict__, "max_new_tokens": args.max_new_tokens})
    history: tuple[Turn, ...] = ()
    prompts_seen = []
    for text in CONVERSATION[: args.messages]:
        (sentiment,) = runner.tag([text])
        request = prompts.reply_request(sentiment.tone, text, history, params)
        prompt = runner.prompter.build(request)
        prompts_seen.append(prompt)
        reply = runner.start_reply(request)
        while not reply.done:
            reply.step()
        history += (Turn("user", text, sentiment.tone),
                    Turn("assistant", runner.decode(reply.generated)))  # fmt: skip
    budget = module.PREFILL_TOKENS_PER_STEP
    times: dict[str, list[float]] = {"whole": [], "cut": []}
    for _ in range(args.repeats):
        for prompt in prompts_seen[1:]:
            tail_start = len(prompt.ids) - min(len(prompt.ids) - prompt.opening, 40)
            tail = prompt.ids[tail_start:]
            for way in ("whole", "cut"):
                seq = runner._take_sequence()
                try:
                    opening = runner._opening(prompt.ids[: prompt.opening])
                    module.llama_cpp.llama_memory_seq_cp(runner._memory, opening, seq, -1, -1)
                    if tail_start > prompt.opening:
                        runner._forward([(seq, prompt.ids[prompt.opening : tail_start],
                                          prompt.opening)], [False])  # fmt: skip
                    parts = (
                        [tail]
                        if way == "whole"
                        else [tail[i : i + budget] for i in range(0, len(tail), budget)]
                    )
                    start = time.perf_counter()
                    position = tail_start
                    for part in parts:
                        runner._forward([(seq, part, position)])
                        position += len(part)
                    times[way].append(_ms(start))
                finally:
                    runner._drop_sequence(seq)
    figures = {way: float(np.median(values)) for way, values in times.items()}
    print(
        f"40-token prompt tails, {len(times['whole'])} each: whole {figures['whole']:.0f} ms, "
        f"cut at {budget}: {figures['cut']:.0f} ms (p50)"
    )
    return {"times": times, "p50": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.shared_pass",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("what", choices=("profile", "accuracy", "chunks"))
    parser.add_argument("--messages", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--current-only", action="store_true", help="profile: the bot's way only")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    settings = bench_settings()
    runner = runner_factory(settings)()
    if not hasattr(runner, "_memory"):
        raise SystemExit("this bench prototypes on llama.cpp only (BACKEND=llama_cpp)")
    result = {"profile": profile, "accuracy": accuracy, "chunks": chunks}[args.what](runner, args)
    print(f"{runner.name}; load average {__import__('os').getloadavg()}", file=sys.stderr)
    write_json(args.json, f"shared_pass_{args.what}", {"args": vars(args), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
