"""BACKEND=openai: the model on an OpenAI-compatible serving engine (vLLM, llama.cpp's servers),
the bot a thin client. See engine.py for why this backend is a ModelFacade, not a runner."""

from __future__ import annotations

from functools import partial

from engine.model.backends.openai_api.service import OpenAIEngine
from engine.model.backends.openai_api.tokens import load_tokens
from engine.model.config import ModelConfig, OpenAIConfig, WorkerConfig
from engine.model.label_head import LabelHead, head_for, model_identity
from engine.model.runner import RunnerOptions


def load_service(
    config: ModelConfig, options: RunnerOptions, limits: WorkerConfig, remote: OpenAIConfig
) -> OpenAIEngine:
    """The backend plugin's entry (engine/model/backends/__init__.py); start() connects."""
    return OpenAIEngine(
        remote, limits, options, partial(load_tokens, config), partial(label_head, config)
    )


def label_head(config: ModelConfig) -> LabelHead:
    """The head fitted for the model MODEL names (the tokenizer the prompts are built with:
    it should be the served model's); the server hands out no hidden state, so only its
    calibration and neutral band are used."""
    return head_for(model_identity(config.model, config.cache_dir))
