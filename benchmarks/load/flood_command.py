"""The command variant of `benchmarks.load.load --flood`: `--flood-command "/mood why"` makes the
flooder send that command instead of messages, and the others' label latency is put in units
of one label pass measured in the same run.

The flooder first says FLOOD_SAYS (twelve clauses, so each /mood why is one label pass of 13
texts, the most it labels at once: engine/chat/why.py MAX_CLAUSES) and waits for the answer;
then it sends the command N times without waiting. The others' added label latency (with the
flood minus alone, p50 / p95 / max) is divided by the median duration of the label passes that
held the flooder's /mood why (from the worker's engine.model.timings records of the flood run;
for a command without label passes, every label pass of the run): the claim being measured is
that a command flood delays another user's label by at most one label pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import percentile
from benchmarks.load.outcome import Outcome
from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.model.timings import text_id
from engine.types import UserKey

FLOOD_SAYS = (
    "I missed the bus, it rained all morning, my coffee spilled, the meeting ran late, "
    "my phone died, lunch was cold, but my friend called, we laughed a lot, the sun came out, "
    "I finished my project, dinner was lovely, and I feel calm now."
)

# A command's answer that says it was not done, by the failure's name in the bench's outcomes.
FAILURES = {
    texts.SLOW_DOWN: "slow_down",
    texts.BUSY: "busy",
    texts.TIMEOUT: "timeout",
    texts.MODEL_ERROR: "model_error",
    texts.STORAGE_ERROR: "storage_error",
}


async def send_command(commands: Commands, platform: str, outcome: Outcome) -> None:
    """Run `outcome.text` ("/mood why") as its user in their own chat; its answer is the end."""
    start = outcome.sent_at = time.monotonic()
    name, _, args = outcome.text.strip().lstrip("/").partition(" ")
    caller = Caller(UserKey(platform, outcome.user), outcome.user)
    result = await commands.run(name, caller, args)
    failure = FAILURES.get(result.text)
    if failure is None:
        outcome.done += 1
    else:
        outcome.failures.append(failure)
    outcome.end_s = time.monotonic() - start


def check_commands(outcomes: Sequence[Outcome], stored: int) -> list[str]:
    """Every command ended once, answered or told to slow down; the flooder's one message
    (FLOOD_SAYS) is its one stored mood event: a command stores none."""
    problems = [f"{o.user}#{o.index}: failed with {o.failures[0]!r}"
                for o in outcomes if o.failures and o.failures[0] != "slow_down"]  # fmt: skip
    problems += [f"{o.user}#{o.index}: {o.done + len(o.failures)} final events (want exactly 1)"
                 for o in outcomes if o.done + len(o.failures) != 1]  # fmt: skip
    if stored != 1:
        problems.append(f"flooder: {stored} stored mood events (want 1: its one message)")
    return problems


def label_passes(records: Sequence[dict[str, Any]], flood_text: str) -> dict[str, Any]:
    """The run's label passes (worker spans) and those that held a job labelling `flood_text`
    first (a /mood why of it): count, texts and median seconds."""
    spans = [r for r in records if r["type"] == "WorkerSpan" and r["kind"] == "tag"]
    ident = text_id(flood_text)
    flood = [r for r in records if r["type"] == "JobTimes" and r["kind"] == "tag"
             and r["text_id"] == ident and r["outcome"] == "ok"]  # fmt: skip
    return {
        "passes": len(spans),
        "pass_s_p50": percentile([r["end"] - r["start"] for r in spans], 50),
        "flood_passes": len(flood),
        "flood_pass_texts_p50": percentile([r["batch"] for r in flood], 50),
        "flood_pass_s_p50": percentile([r["done"] - r["started"] for r in flood], 50),
    }


def label_delay(
    before: Sequence[float], after: Sequence[float], unit_s: float | None
) -> dict[str, Any]:
    """The others' label latency with the flood (`after`) minus alone (`before`): p50, p95,
    max, in seconds and in label passes of `unit_s`."""
    result: dict[str, Any] = {"label_pass_s": unit_s}
    for name, pick in (("p50", lambda v: percentile(v, 50)), ("p95", lambda v: percentile(v, 95)),
                       ("max", lambda v: max(v) if v else None)):  # fmt: skip
        a, b = pick(before), pick(after)
        added = None if a is None or b is None else b - a
        result[f"alone_{name}_s"], result[f"flood_{name}_s"] = a, b
        result[f"added_{name}_s"] = added
        result[f"added_{name}_passes"] = added / unit_s if added is not None and unit_s else None
    return result
