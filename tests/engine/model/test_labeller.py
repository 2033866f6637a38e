"""The fast label path (cached analyst head, two LM-head rows, batching) must give the same
scores as running the whole prompt through the whole model."""

from __future__ import annotations

from typing import Any

import pytest

from engine.language import detect_language
from engine.model.backends.transformers_runner import TransformersRunner
from engine.model.runner import RunnerOptions
from tests import tiny_model

TEXTS = [
    "今天 好 开心",
    "I am so sad today",
    "a much longer message with many many words in it to make the batch ragged " * 3,
    "ok",
]


# The tiny model only slows down with more threads (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return tiny_model.build(tmp_path_factory.mktemp("tiny-labeller"))


def full_prompt_p_positive(runner: TransformersRunner, text: str) -> float:
    positive, negative = runner.label_logits(text)  # whole prompt, whole LM head
    return runner.label_head.p_positive(positive, negative, detect_language(text))


def test_prefix_path_equals_the_full_pass_one_by_one(tiny: tuple[Any, Any]) -> None:
    runner = TransformersRunner(*tiny, "tiny")
    assert runner.options.label_prefix_cache
    for text in TEXTS:
        (fast,) = runner.tag([text])
        assert fast.p_positive == pytest.approx(full_prompt_p_positive(runner, text), abs=1e-5)


def test_a_ragged_batch_equals_single_passes(tiny: tuple[Any, Any]) -> None:
    runner = TransformersRunner(*tiny, "tiny")
    batched = [s.p_positive for s in runner.tag(TEXTS)]
    single = [runner.tag([text])[0].p_positive for text in TEXTS]
    assert batched == pytest.approx(single, abs=1e-5)
    assert len(set(round(p, 6) for p in batched)) > 1  # the texts really score differently


def test_the_cached_head_is_not_changed_by_use(tiny: tuple[Any, Any]) -> None:
    runner = TransformersRunner(*tiny, "tiny")
    first = runner.tag(["ok"])[0].p_positive
    runner.tag(TEXTS)  # a batch must not grow or overwrite the shared prefix cache
    assert runner.tag(["ok"])[0].p_positive == pytest.approx(first, abs=1e-6)


def test_long_text_is_truncated_on_the_fast_path_too(tiny: tuple[Any, Any]) -> None:
    options = RunnerOptions(sentiment_max_tokens=16)
    runner = TransformersRunner(*tiny, "tiny", options)
    long_text = "sad " * 500
    (fast,) = runner.tag([long_text])
    assert fast.p_positive == pytest.approx(full_prompt_p_positive(runner, long_text), abs=1e-5)


def test_the_reference_path_can_be_chosen(tiny: tuple[Any, Any]) -> None:
    runner = TransformersRunner(*tiny, "tiny", RunnerOptions(label_prefix_cache=False))
    runner.tag(["ok"])
    assert runner._labeller is None  # the plain pass never builds the prefix cache
