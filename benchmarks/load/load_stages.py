"""benchmarks.load.load's per-stage breakdown: where each message's time went, from the model
worker's engine.model.timings records lined up with what the bench saw (all on time.monotonic()).

Per message, in order: `to_worker` (sent → label job queued: platform delivery, inbox, locks),
`label_wait` (queued → its label pass began: the worker was busy), `label_pass`, `label_out`
(label ready → label shown: service and platform call), `to_reply` (label ready → reply job
queued: history read, prompt built), `reply_wait` (→ an active slot), `prompt_read` (slot →
first reply text: reading the prompt, interleaved with other work), `text_out` (first text in
the worker → shown: the renderer's edit pacing and the platform call), `decode` (first text
→ last token), `final_out` (last token → final text shown: storing, the last edit; negative
when the whole text was on screen before the step that produced the end-of-turn token ended).

`label_wait`, `reply_wait` and `prompt_read` are split further by what the worker thread did
meanwhile: label passes, reply starts (start_reply; llama.cpp reads a new prompt opening
there), steps that read prompts (a reply in them had no text yet) and pure decode steps.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchmarks.common import mean, percentile
from engine.chat.prompts import detect_language
from engine.model.timings import text_id

STAGES = ("to_worker", "label_wait", "label_pass", "label_out", "to_reply", "reply_wait",
          "prompt_read", "text_out", "decode", "final_out")  # fmt: skip
BUSY_KINDS = ("label pass", "reply start", "prompt step", "decode step")
Record = Mapping[str, Any]
# A reply job is queued within this long after its label is ready (the label is sent and the
# history read in between: well under a second even on a loaded machine).
REPLY_AFTER_S = 10.0


def split(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """(job records, span records) of a engine.model.timings stream."""
    jobs: list[Record] = []
    spans: list[Record] = []
    for record in records:
        (jobs if record["type"] == "JobTimes" else spans).append(record)
    return jobs, spans


def _kind(span: Record) -> str:
    if span["kind"] == "tag":
        return "label pass"
    if span["kind"] == "start":
        return "reply start"
    return "prompt step" if span["reading"] else "decode step"


def busy(start: float, end: float, spans: Sequence[Record]) -> dict[str, float]:
    """Seconds of [start, end] the worker spent on each kind of work; the rest is `other`."""
    out = dict.fromkeys(BUSY_KINDS, 0.0)
    for span in spans:
        overlap = min(end, span["end"]) - max(start, span["start"])
        if overlap > 0:
            out[_kind(span)] += overlap
    out["other"] = max(0.0, (end - start) - sum(out.values()))
    return out


def compute(messages: Sequence[Mapping[str, Any]], spans: Sequence[Record]) -> dict[str, Any]:
    """What the answers cost the model worker: its busy seconds per kind of work between the
    first message sent and the last answer complete, per answer. 60 / that total is the most
    answers a minute the same work allows on this machine, even with a worker that never
    waits; the pure decode steps' cost by rows shows what batching buys."""
    done = [m for m in messages if m["done"] and m["end_s"] is not None]
    if not done:
        return {}
    start = min(m["sent_at"] for m in messages)
    end = max(m["sent_at"] + m["end_s"] for m in done)
    spent = busy(start, end, spans)
    work = sum(spent[kind] for kind in BUSY_KINDS)
    by_rows: dict[int, list[float]] = {}
    for span in spans:
        if _kind(span) == "decode step" and start <= span["start"] <= end:
            by_rows.setdefault(span["size"], []).append(span["end"] - span["start"])
    return {
        "answers": len(done),
        "busy_share": work / (end - start) if end > start else None,
        "per_answer_s": {kind: spent[kind] / len(done) for kind in BUSY_KINDS},
        "per_answer_total_s": work / len(done),
        "ceiling_per_min": 60.0 * len(done) / work if work else None,
        "decode_step_s_by_rows": {
            rows: statistics.median(times) for rows, times in sorted(by_rows.items())
        },
    }


def compute_lines(result: Mapping[str, Any], reference_per_min: float | None) -> list[str]:
    """compute() in words, against the reference's rate when there is one."""
    if not result:
        return []
    per = ", ".join(f"{kind} {s:.2f}" for kind, s in result["per_answer_s"].items())
    ceiling = result["ceiling_per_min"]
    lines = [f"worker time per answer (s): {per}; total {result['per_answer_total_s']:.2f}",
             f"the worker was busy {100 * (result['busy_share'] or 0):.0f}% of the run: this work"
             f" allows at most {ceiling:.1f} answers/min"]  # fmt: skip
    if reference_per_min:
        lines[-1] += (f" = {ceiling / reference_per_min:.1f}x the reference's "
                      f"{reference_per_min:.2f}; 8x would need <= "
                      f"{60.0 / (8 * reference_per_min):.2f} s per answer")  # fmt: skip
    steps = result["decode_step_s_by_rows"]
    lines.append(
        "pure decode steps, ms by rows: "
        + ", ".join(
            f"{rows}: {1000 * s:.0f} ({1000 * s / rows:.0f}/row)" for rows, s in steps.items()
        )
    )
    return lines


def match(messages: Sequence[Mapping[str, Any]], jobs: Sequence[Record]) -> list[dict[str, Any]]:
    """Each message's (tag job, reply job), by the same text. A tag job is queued just after its
    message was sent, a reply job just after its label was ready: so the earliest unused job
    from that point on (and before the message ended) is taken, which keeps users who sent
    the same text apart unless they sent it at the same moment."""
    used: set[int] = set()

    def take(kind: str, key: str, since: float, until: float) -> Record | None:
        candidates = [j for j in jobs if j["kind"] == kind and j["text_id"] == key
                      and id(j) not in used and since <= j["enqueued"] <= until]  # fmt: skip
        job = min(candidates, key=lambda j: j["enqueued"], default=None)
        if job is not None:
            used.add(id(job))
        return job

    pairs: list[dict[str, Any]] = []
    labelled: list[tuple[dict[str, Any], Record]] = []
    for message in sorted(messages, key=lambda m: m["sent_at"]):
        until = message["sent_at"] + (message["end_s"] or math.inf)
        tag = take("tag", text_id(message["text"]), message["sent_at"] - 0.01, until)
        pairs.append({"message": message, "tag": tag, "reply": None})
        if tag is not None and tag["done"] is not None:
            labelled.append((pairs[-1], tag))
    for pair, tag in sorted(labelled, key=lambda item: item[1]["done"]):
        ended = pair["message"]["sent_at"] + (pair["message"]["end_s"] or math.inf)
        until = min(ended, tag["done"] + REPLY_AFTER_S)
        pair["reply"] = take("reply", tag["text_id"], tag["done"] - 0.01, until)
    return pairs


def _gap(later: float | None, earlier: float | None) -> float | None:
    return later - earlier if later is not None and earlier is not None else None


def stages(pair: Mapping[str, Any], spans: Sequence[Record]) -> dict[str, Any]:
    """One message's stage durations (None where a point was not reached) and splits."""
    m, tag, reply = pair["message"], pair["tag"] or {}, pair["reply"] or {}
    sent = m["sent_at"]

    def at(offset: float | None) -> float | None:
        return sent + offset if offset is not None else None

    out: dict[str, Any] = {
        "to_worker": _gap(tag.get("enqueued"), sent),
        "label_wait": _gap(tag.get("started"), tag.get("enqueued")),
        "label_pass": _gap(tag.get("done"), tag.get("started")),
        "label_out": _gap(at(m["label_s"]), tag.get("done")),
        "to_reply": _gap(reply.get("enqueued"), tag.get("done")),
        "reply_wait": _gap(reply.get("started"), reply.get("enqueued")),
        "prompt_read": _gap(reply.get("first_text"), reply.get("started")),
        "text_out": _gap(at(m["first_text_s"]), reply.get("first_text")),
        "decode": _gap(reply.get("done"), reply.get("first_text")),
        "final_out": _gap(at(m["end_s"]), reply.get("done")) if m["done"] else None,
        "prompt_tokens": reply.get("prompt_tokens"),
        "cached_tokens": reply.get("cached_tokens"),
        "steps": reply.get("steps"),
        "label_batch": tag.get("batch"),
    }
    if out["label_wait"] is not None:
        out["label_wait_behind"] = busy(tag["enqueued"], tag["started"], spans)
    if out["reply_wait"] is not None:
        out["reply_wait_during"] = busy(reply["enqueued"], reply["started"], spans)
    if out["prompt_read"] is not None:
        out["prompt_read_during"] = busy(reply["started"], reply["first_text"], spans)
    return out


def _split_means(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, float | None]:
    splits = [row[key] for row in rows if key in row]
    kinds = [*BUSY_KINDS, "other"]
    return {kind: mean([s[kind] for s in splits]) for kind in kinds}


def _figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for stage in STAGES:
        values = [row[stage] for row in rows if row.get(stage) is not None]
        out[stage] = {"p50": percentile(values, 50), "p95": percentile(values, 95),
                      "mean": mean(values)}  # fmt: skip
    out["label_wait_behind_mean"] = _split_means(rows, "label_wait_behind")
    out["reply_wait_during_mean"] = _split_means(rows, "reply_wait_during")
    out["prompt_read_during_mean"] = _split_means(rows, "prompt_read_during")
    prompts = [r for r in rows if r.get("prompt_tokens") and r.get("cached_tokens") is not None]
    out["prompt_tokens_mean"] = mean([r["prompt_tokens"] for r in prompts])
    out["uncached_tokens_mean"] = mean([r["prompt_tokens"] - r["cached_tokens"] for r in prompts])
    return out


def slowest(rows: Sequence[Mapping[str, Any]], metric: Sequence[float | None]) -> list[Any]:
    """The quarter of rows (at least one) with the largest `metric`: what their p95 is made of."""
    ranked = sorted((v, i) for i, v in enumerate(metric) if v is not None)
    count = max(1, math.ceil(len(ranked) / 4)) if ranked else 0
    return [rows[i] for _, i in ranked[len(ranked) - count :]]


def breakdown(messages: Sequence[Mapping[str, Any]], records: Iterable[Record]) -> dict[str, Any]:
    """The per-stage figures for the first wave, the follow-ups, and the slowest quarter of the
    first wave by label time and of all messages by first-text time; plus KV reuse of the
    follow-ups by whether their label changed, and the worker's busy time per kind."""
    jobs, spans = split(records)
    pairs = match(messages, jobs)
    rows = [stages(pair, spans) for pair in pairs]
    ms = [pair["message"] for pair in pairs]
    first = [r for r, m in zip(rows, ms, strict=True) if m["index"] == 0]
    follow = [(r, m) for r, m in zip(rows, ms, strict=True) if m["index"] > 0]
    label_first = [m["label_s"] for m in ms if m["index"] == 0]
    previous_tone = {(m["user"], m["index"] + 1): m["tone"] for m in ms}
    same = [r for r, m in follow if m["tone"] == previous_tone.get((m["user"], m["index"]))]
    changed = [r for r, m in follow if m["tone"] != previous_tone.get((m["user"], m["index"]))]
    # The persona and the examples follow the message's language (engine.chat.prompts), so a switch
    # changes the prompt's opening and with it everything a kept conversation could share.
    previous_text = {(m["user"], m["index"] + 1): m["text"] for m in ms}
    switched = [r for r, m in follow if detect_language(m["text"])
                != detect_language(previous_text.get((m["user"], m["index"]), ""))]  # fmt: skip
    kept_language = [r for r, m in follow if not any(r is s for s in switched)]
    worker = {kind: 0.0 for kind in BUSY_KINDS}
    counts = {kind: 0 for kind in BUSY_KINDS}
    for span in spans:
        worker[_kind(span)] += span["end"] - span["start"]
        counts[_kind(span)] += 1
    return {
        "matched": sum(p["tag"] is not None for p in pairs),
        "first_wave": _figures(first),
        "follow_ups": _figures([r for r, _ in follow]),
        "slowest_first_wave_labels": _figures(slowest(first, label_first)),
        "slowest_first_texts": _figures(slowest(rows, [m["first_text_s"] for m in ms])),
        "follow_ups_same_label": _figures(same),
        "follow_ups_label_changed": _figures(changed),
        "follow_ups_same_language": _figures(kept_language),
        "follow_ups_language_switched": _figures(switched),
        "worker_busy_s": worker,
        "compute": compute(ms, spans),
        "worker_spans": counts,
        "rows": [
            {"user": m["user"], "index": m["index"], **r} for r, m in zip(rows, ms, strict=True)
        ],
    }


STAGE_HEADERS = ["stage (s)", "first wave p50", "p95", "slowest labels, mean",
                 "follow-ups p50", "p95", "slowest first texts, mean"]  # fmt: skip
SPLIT_HEADERS = ["worker was doing (s)", "label_wait: first wave", "slowest labels",
                 "reply_wait: first wave", "slowest first texts",
                 "prompt_read: first wave", "slowest first texts"]  # fmt: skip
KV_HEADERS = ["replies", "n", "prompt tokens", "not in the KV cache"]


def stage_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """The stage table: p50/p95 per group, and the means of the slowest quarters."""
    rows = []
    for stage in STAGES:
        first, follow = result["first_wave"][stage], result["follow_ups"][stage]
        rows.append([stage, first["p50"], first["p95"],
                     result["slowest_first_wave_labels"][stage]["mean"],
                     follow["p50"], follow["p95"],
                     result["slowest_first_texts"][stage]["mean"]])  # fmt: skip
    return rows


def split_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """What the worker did while labels waited and while prompts were read (means)."""
    return [[kind, result["first_wave"]["label_wait_behind_mean"][kind],
             result["slowest_first_wave_labels"]["label_wait_behind_mean"][kind],
             result["first_wave"]["reply_wait_during_mean"][kind],
             result["slowest_first_texts"]["reply_wait_during_mean"][kind],
             result["first_wave"]["prompt_read_during_mean"][kind],
             result["slowest_first_texts"]["prompt_read_during_mean"][kind]]
            for kind in [*BUSY_KINDS, "other"]]  # fmt: skip


def kv_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    groups = {"first wave": "first_wave", "follow-ups, same label": "follow_ups_same_label",
              "follow-ups, label changed": "follow_ups_label_changed",
              "follow-ups, same language": "follow_ups_same_language",
              "follow-ups, language switched": "follow_ups_language_switched"}  # fmt: skip
    return [[name, result[key]["n"], result[key]["prompt_tokens_mean"],
             result[key]["uncached_tokens_mean"]] for name, key in groups.items()]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.load.load_stages FOLDER`: the stage tables again from a
    benchmarks.load.load folder
    (results.json and timings.jsonl), written back into its results.json."""
    import argparse
    import json
    from pathlib import Path

    from benchmarks.common import read_jsonl, table

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load.load_stages", description=main.__doc__
    )
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args(argv).folder
    results = json.loads((folder / "results.json").read_text())
    run = results["concurrent"]
    run["stages"] = result = breakdown(run["outcomes"], read_jsonl(folder / "timings.jsonl"))
    print(table(STAGE_HEADERS, stage_rows(result)))
    print(table(SPLIT_HEADERS, split_rows(result)))
    print(table(KV_HEADERS, kv_rows(result)))
    reference = results.get("reference", {}).get("replies_per_min")
    print("\n".join(compute_lines(result["compute"], reference)))
    (folder / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
