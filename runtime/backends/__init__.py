"""Backend plugins: each turns the configured model into a runtime.runner.ModelRunner.

A backend is a module with `load(config: ModelConfig, options: RunnerOptions) -> ModelRunner`,
registered in BACKENDS by name (the BACKEND setting). Modules are imported only when chosen,
so a bot on llama.cpp never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any

from runtime.config import ModelConfig
from runtime.model_files import names_a_gguf
from runtime.runner import ModelRunner

BACKENDS: dict[str, str] = {
    "llama_cpp": "runtime.backends.llama_cpp",
    "transformers": "runtime.backends.transformers_runner",
}


def choose_backend(config: ModelConfig) -> str:
    """BACKEND=auto picks llama.cpp (faster, smaller: README "Performance and accuracy") when
    it is installed and can run what is configured, and transformers otherwise."""
    if config.backend != "auto":
        return config.backend
    runs_gguf = names_a_gguf(config.model)
    if runs_gguf and config.sentiment_method == "logits" and find_spec("llama_cpp"):
        return "llama_cpp"
    return "transformers"


def runner_loader(config: ModelConfig, **option_overrides: Any) -> Callable[[], ModelRunner]:
    """A loader for the configured backend and model, to run on the worker thread; the
    benchmarks pass RunnerOptions overrides."""

    def load() -> ModelRunner:
        module = importlib.import_module(BACKENDS[choose_backend(config)])
        runner: ModelRunner = module.load(config, config.runner_options(**option_overrides))
        return runner

    return load
