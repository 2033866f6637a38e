"""Backend plugins, chosen by name (the BACKEND setting); modules are imported only when
chosen, so a bot on llama.cpp never imports torch.

A local backend is a module with `load(config: ModelConfig, options: RunnerOptions) ->
ModelRunner`, registered in BACKENDS: the one worker thread (engine/model/worker.py) drives it.
A remote backend is a module with `load_service(config, options, limits, remote) -> ModelService`,
registered in REMOTE_BACKENDS: the serving engine schedules, so it is the facade itself.
`model_service` builds whichever the settings name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any, Protocol

from engine.errors import ModelLoadError
from engine.model.config import ModelConfig, OpenAIConfig, WorkerConfig
from engine.model.model_files import names_a_gguf
from engine.model.runner import ModelRunner
from engine.model.worker import ModelWorker
from engine.ports import ModelFacade

BACKENDS: dict[str, str] = {
    "llama_cpp": "engine.model.backends.llama_cpp",
    "transformers": "engine.model.backends.transformers_runner",
}
REMOTE_BACKENDS: dict[str, str] = {
    "openai": "engine.model.backends.openai_api",
}


class ModelService(ModelFacade, Protocol):
    """The model as the bot runs it: the facade plus its lifetime and a name for the log."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None:
        """Load the model or connect to it; raises ModelLoadError saying what to fix."""

    async def stop(self) -> None: ...


def choose_backend(config: ModelConfig) -> str:
    """BACKEND=auto picks llama.cpp (faster, smaller: docs/benchmarks.md) when
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
        backend = choose_backend(config)
        if backend not in BACKENDS:
            raise ModelLoadError(
                f"BACKEND={backend} runs the model on a server: there is no local runner "
                "(use BACKEND=llama_cpp or transformers here)"
            )
        module = importlib.import_module(BACKENDS[backend])
        runner: ModelRunner = module.load(config, config.runner_options(**option_overrides))
        return runner

    return load


def model_service(
    config: ModelConfig,
    limits: WorkerConfig,
    remote: OpenAIConfig | None = None,
    **option_overrides: Any,
) -> ModelService:
    """The model facade the settings name: a remote engine's client, or the worker thread
    on a local runner. The benchmarks pass RunnerOptions overrides."""
    backend = choose_backend(config)
    if backend in REMOTE_BACKENDS:
        module = importlib.import_module(REMOTE_BACKENDS[backend])
        options = config.runner_options(**option_overrides)
        engine: ModelService = module.load_service(
            config, options, limits, remote or OpenAIConfig()
        )
        return engine
    return ModelWorker(runner_loader(config, **option_overrides), limits)
