"""The runtime's settings: which model on which backend, the worker's limits, and the remote
serving engine (BACKEND=openai).

Every key is documented, with its default, in `.env.example`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from engine.config import ConfigGroup, HttpUrl, Lowered
from engine.model.model_files import DEFAULT_MODEL, default_cache_dir
from engine.model.runner import RunnerOptions, SentimentMethod

Backend = Literal["auto", "transformers", "llama_cpp", "openai"]
# What the OpenAI-compatible server is: vLLM takes token-id prompts, several prompts per
# request, logprob_token_ids and priority; any other server gets text prompts, one each.
ServerKind = Literal["auto", "vllm", "generic"]
Dtype = Literal["auto", "float32", "bfloat16"]
_OPTIONS = RunnerOptions()


def _expand(path: Path) -> Path:
    return path.expanduser()


class ModelConfig(ConfigGroup):
    model: str = Field(DEFAULT_MODEL, alias="MODEL")
    backend: Annotated[Backend, Lowered] = Field("auto", alias="BACKEND")
    dtype: Annotated[Dtype, Lowered] = Field("auto", alias="MODEL_DTYPE")
    cache_dir: Annotated[Path, AfterValidator(_expand)] = Field(
        default_factory=default_cache_dir, alias="MODEL_CACHE_DIR"
    )
    threads: int = Field(0, ge=0, le=256, alias="TORCH_THREADS")
    llama_context_tokens: int = Field(8192, ge=512, le=131072, alias="LLAMA_CONTEXT_TOKENS")
    # The prompt options' defaults are written once, on RunnerOptions.
    sentiment_method: Annotated[SentimentMethod, Lowered] = Field(
        _OPTIONS.sentiment_method, alias="SENTIMENT_METHOD"
    )
    sentiment_max_tokens: int = Field(
        _OPTIONS.sentiment_max_tokens, ge=16, le=4096, alias="SENTIMENT_MAX_TOKENS"
    )
    history_max_tokens: int = Field(
        _OPTIONS.history_max_tokens, ge=0, le=16384, alias="HISTORY_MAX_TOKENS"
    )

    @model_validator(mode="after")
    def _generate_needs_transformers(self) -> Self:
        if self.backend in ("llama_cpp", "openai") and self.sentiment_method != "logits":
            raise ValueError("SENTIMENT_METHOD=generate needs BACKEND=transformers")
        return self

    def runner_options(self, **overrides: object) -> RunnerOptions:
        """How the runner builds its prompts; the benchmarks override single options."""
        options = {
            "sentiment_method": self.sentiment_method,
            "sentiment_max_tokens": self.sentiment_max_tokens,
            "history_max_tokens": self.history_max_tokens,
            **overrides,
        }
        return RunnerOptions(**options)  # type: ignore[arg-type]


class WorkerConfig(ConfigGroup):
    queue_size: int = Field(32, ge=1, le=10_000, alias="QUEUE_SIZE")
    max_active_replies: int = Field(8, ge=1, le=64, alias="MAX_ACTIVE_REPLIES")
    request_timeout_s: float = Field(120.0, ge=1.0, le=3600.0, alias="REQUEST_TIMEOUT_S")
    label_batch: int = Field(8, ge=1, le=64, alias="LABEL_BATCH")


def _no_trailing_slash(value: str) -> str:
    return value.rstrip("/")  # the client appends /models, /completions


class OpenAIConfig(ConfigGroup):
    """BACKEND=openai: the model runs on an OpenAI-compatible serving engine (vLLM, llama.cpp's
    server); MODEL then only names the tokenizer the prompts are built with."""

    base_url: Annotated[HttpUrl, AfterValidator(_no_trailing_slash)] = Field(
        "http://127.0.0.1:8000/v1", alias="OPENAI_BASE_URL"
    )
    api_key: str = Field("", alias="OPENAI_API_KEY", repr=False)  # never logged
    model: str = Field("", alias="OPENAI_MODEL")  # "" = the first model the server lists
    server: Annotated[ServerKind, Lowered] = Field("auto", alias="OPENAI_SERVER")
    priority: bool = Field(False, alias="OPENAI_PRIORITY")
    top_logprobs: int = Field(20, ge=2, le=1000, alias="OPENAI_TOP_LOGPROBS")
