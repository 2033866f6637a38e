"""benchmarks.load.load --flood --flood-command on the scripted model: the flooder's commands are
capped like messages, nothing of the others is lost, and the label passes and the others'
added label latency in passes are measured and written."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.load import flood_command, load
from engine.chat import why
from engine.chat.config import ChatConfig
from engine.model.worker import ModelWorker
from tests.scripted import ScriptedRunner
from tests.support import worker_config


def test_the_flooders_message_gives_each_mood_why_the_largest_label_pass() -> None:
    assert len(why.split_clauses(flood_command.FLOOD_SAYS)) == why.MAX_CLAUSES


async def test_a_mood_why_flood_is_capped_and_its_label_passes_are_measured(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner(delay_s=0.005, tag_delay_s=0.01)
    worker = ModelWorker(lambda: runner, worker_config(queue_size=8, request_timeout_s=30))
    await worker.start()
    settings = SimpleNamespace(chat=ChatConfig(user_queue_max=2))
    work = load.plan(users=2, per_user=2)
    try:
        result = await load.measure_flood(
            worker, settings, work, ["/mood why"] * 30, seconds=0.0, commands=True
        )
    finally:
        await worker.stop()
    assert result["problems"] == []
    others, flooder = result["others"], result["flooder"]
    # The 30 at once fill more than the worker's queue of 8 had they not been capped.
    assert (others["messages"], others["replies"], others["busy"]) == (4, 4, 0)
    assert flooder["busy"] == 0
    assert flooder["answered"] == 3  # one at the worker, USER_QUEUE_MAX=2 waiting
    assert flooder["slow_down"] == 27
    passes = result["label_passes"]
    assert passes["flood_passes"] == 3
    assert passes["flood_pass_texts_p50"] == why.MAX_CLAUSES + 1
    assert passes["flood_pass_s_p50"] >= 0.01  # the scripted label pass sleeps that long


def test_the_added_label_latency_is_counted_in_label_passes() -> None:
    delay = flood_command.label_delay([1.0, 2.0, 3.0], [1.5, 2.5, 5.0], unit_s=0.5)
    assert delay["added_p50_s"] == pytest.approx(0.5)
    assert delay["added_p50_passes"] == pytest.approx(1.0)
    assert delay["added_max_s"] == pytest.approx(2.0)
    assert delay["added_max_passes"] == pytest.approx(4.0)
    assert flood_command.label_delay([], [1.0], None)["added_p95_passes"] is None


def test_the_load_main_writes_the_command_floods_label_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the repo
    monkeypatch.setattr(load, "describe_engine", lambda engine: "scripted")
    runner = ScriptedRunner(tag_delay_s=0.005)
    monkeypatch.setattr(
        load,
        "bench_model",
        lambda settings, limits: (
            ModelWorker(lambda: runner, worker_config(request_timeout_s=30)),
            [],
        ),
    )
    argv = ["--users", "2", "--messages", "2", "--flood", "--flood-messages", "6",
            "--flood-seconds", "0", "--flood-command", "/mood why", "--flood-lead-s", "0.05",
            "--out", "why"]  # fmt: skip
    assert load.main(argv) == 0
    results = json.loads((tmp_path / "why" / "results.json").read_text())
    flood = results["flood"]
    assert flood["flooder"]["answered"] + flood["flooder"]["slow_down"] == 6
    assert flood["label_passes"]["flood_passes"] == flood["flooder"]["answered"]
    delay = flood["label_delay"]
    assert delay["label_pass_s"] == flood["label_passes"]["flood_pass_s_p50"]
    assert delay["added_p95_passes"] is not None
    assert (tmp_path / "why" / "flood-timings.jsonl").read_text().strip()
    sent = {o["user"]: o["sent_at"] for o in reversed(flood["outcomes"])}  # each one's first
    assert sent["user0"] - sent["flooder"] >= 0.05  # the others start after the flood's lead
    with pytest.raises(SystemExit):
        load.main(["--flood-command", "/mood why"])  # only with --flood
