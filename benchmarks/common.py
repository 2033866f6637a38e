"""Shared helpers of the benchmarks: metrics, percentiles, tables, JSON, loading the engine.

Nothing here imports torch or the model at import time, so the fast tests can use it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import resource
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from bot.settings import Settings
    from engine.chat.config import ChatConfig
    from engine.chat.service import ChatService
    from engine.model.backends import ModelService
    from engine.model.config import WorkerConfig
    from engine.model.runner import ModelRunner
    from storage.store import SqlMoodStore

LABELS = ("positive", "negative")
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# --- statistics -------------------------------------------------------------------------


Request = TypeVar("Request")
Reply = TypeVar("Reply")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get their mean rank); no scikit-learn needed."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    for value in np.unique(score):
        tied = score == value
        ranks[tied] = ranks[tied].mean()
    positives, negatives = truth.sum(), (~truth).sum()
    if not positives or not negatives:
        return float("nan")
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def ece(truth: np.ndarray, p_positive: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-width bins of the shown confidence."""
    predicted = p_positive >= 0.5
    confidence = np.where(predicted, p_positive, 1 - p_positive)
    correct = predicted == truth
    total = 0.0
    edges = np.linspace(0.5, 1.0, bins + 1)
    for low, high in itertools.pairwise(edges):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Classification:
    n: int
    accuracy: float
    recall: dict[str, float]
    precision: dict[str, float]
    f1: dict[str, float]
    macro_f1: float
    confusion: dict[str, dict[str, int]]  # confusion[true][predicted]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str] = LABELS
) -> Classification:
    """Accuracy, per-class recall/precision/F1, macro-F1, confusion matrix.

    A prediction of None (an unparsable answer) counts as wrong for its true class and is
    listed in the confusion matrix under "none".
    """
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    columns = [*labels, "none"]
    confusion = {t: dict.fromkeys(columns, 0) for t in labels}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p if p is not None and p in labels else "none"] += 1
    n = len(truth)
    correct = sum(confusion[label][label] for label in labels)
    recall: dict[str, float] = {}
    precision: dict[str, float] = {}
    f1: dict[str, float] = {}
    for label in labels:
        true_count = sum(confusion[label].values())
        predicted_count = sum(confusion[t][label] for t in labels)
        hits = confusion[label][label]
        recall[label] = hits / true_count if true_count else 0.0
        precision[label] = hits / predicted_count if predicted_count else 0.0
        total = recall[label] + precision[label]
        f1[label] = 2 * recall[label] * precision[label] / total if total else 0.0
    return Classification(
        n=n,
        accuracy=correct / n if n else 0.0,
        recall=recall,
        precision=precision,
        f1=f1,
        macro_f1=sum(f1.values()) / len(labels),
        confusion=confusion,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --- output -----------------------------------------------------------------------------


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], digits: int = 2) -> str:
    """A plain-text (Markdown pipe) table, so it can be pasted into the README as is."""
    cells = [[fmt(cell, digits) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]  # fmt: skip

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out)


def write_json(path: str | Path | None, name: str, data: Mapping[str, Any]) -> Path:
    target = Path(path) if path else RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    print(f"\nwrote {target}", file=sys.stderr)
    return target


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# --- the engine -------------------------------------------------------------------------


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """`--model`, defaulting to MODEL as the bot reads it: the benches that fit or read one
    model's label head name it the same way."""
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL", ""),
        help="a packaged model or a .gguf path (default: MODEL, as the bot)",
    )


def bench_settings(
    *, max_new_tokens: int | None = None, dtype: str | None = None, seed: int | None = None
) -> Settings:
    """The bot's settings from the environment (as the bot reads them), with bench overrides."""
    from bot.settings import Settings

    settings = Settings.from_env()
    chat: dict[str, Any] = {"seed": seed}
    if max_new_tokens is not None:
        chat["max_new_tokens"] = max_new_tokens
    model: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    return settings.model_copy(
        update={
            "chat": settings.chat.model_copy(update=chat),
            "model": settings.model.model_copy(update=model),
        }
    )


def runner_factory(settings: Settings, **option_overrides: Any) -> Callable[[], ModelRunner]:
    """The bot's own loader (engine.model.backends.runner_loader), optionally with other
    RunnerOptions."""
    from engine.model.backends import runner_loader

    return runner_loader(settings.model, **option_overrides)


def model_folder(settings: Settings) -> str:
    """The local transformers folder the bot loads (converting the GGUF once if needed)."""
    from engine.model.model_files import resolve_model

    return resolve_model(settings.model.model, settings.model.cache_dir).location


def describe_machine() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = os.getloadavg()[0]
    return info


def recording_runner_factory(
    settings: Settings, **option_overrides: Any
) -> tuple[Callable[[], ModelRunner], list[Any]]:
    """Like runner_factory, but every reply stream started is appended to the returned list
    (the real runner's streams expose `.generated`, the exact token ids of the reply)."""
    load = runner_factory(settings, **option_overrides)
    streams: list[Any] = []

    def factory() -> ModelRunner:
        runner = load()
        runner.start_reply = recording(runner.start_reply, streams)  # type: ignore[method-assign,assignment]
        return runner

    return factory, streams


def weights_of(runner: Any) -> str:
    """What the runner computes in: a torch dtype, or llama.cpp running the GGUF as it is."""
    model = getattr(runner, "model", None)
    return str(model.dtype) if model is not None else "gguf (llama.cpp)"


def bench_model(settings: Settings, limits: WorkerConfig) -> tuple[ModelService, list[Any]]:
    """The engine the bot builds for these settings (engine.model.backends.model_service): the
    worker on a local runner, or a serving engine's client (BACKEND=openai); and the list
    every reply started is appended to (each has `.generated`, the reply's token ids)."""
    from engine.model.backends import REMOTE_BACKENDS, choose_backend, model_service
    from engine.model.worker import ModelWorker

    if choose_backend(settings.model) not in REMOTE_BACKENDS:
        factory, streams = recording_runner_factory(settings)
        return ModelWorker(factory, limits), streams
    engine = model_service(settings.model, limits, settings.openai)
    replies: list[Any] = []
    engine.reply = recording(engine.reply, replies)  # type: ignore[method-assign,assignment]
    return engine, replies


@contextlib.asynccontextmanager
async def temporary_store(name: str) -> AsyncIterator[SqlMoodStore]:
    """A fresh SQLite mood store in a temporary folder, closed and deleted after."""
    from storage.store import SqlMoodStore

    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as temp:
        store = await SqlMoodStore.open(Path(temp) / f"{name}.db")
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def bench_service(
    name: str, engine: ModelService, chat: ChatConfig
) -> AsyncIterator[ChatService]:
    """The bot's own path for a bench: a ChatService over `engine` (started here, stopped
    after) and a temporary_store."""
    from engine.chat.service import ChatService

    async with temporary_store(name) as store:
        await engine.start()
        try:
            yield ChatService(engine, store, chat)
        finally:
            await engine.stop()


def recording(start: Callable[[Request], Reply], into: list[Any]) -> Callable[[Request], Reply]:
    """`start` (a runner's start_reply or an engine's reply), also appending what it returns
    to `into`, so a bench can read each reply's tokens afterwards."""

    def start_and_record(request: Request) -> Reply:
        reply = start(request)
        into.append(reply)
        return reply

    return start_and_record


def describe_engine(engine: Any) -> str:
    """What computes the replies: the local runner's weights, or the remote engine's name."""
    runner = getattr(engine, "runner", None)
    return weights_of(runner) if runner is not None else f"remote: {engine.name}"
