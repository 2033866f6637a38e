"""engine.model.backends: the configured backend plugin is the one loaded, with its own options."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ModelLoadError
from engine.model import backends
from engine.model.backends import choose_backend, runner_loader
from engine.model.backends import llama_cpp as llama_cpp_runner
from engine.model.config import ModelConfig


def test_the_llama_backend_without_its_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llama_cpp_runner, "llama_cpp", None)
    config = ModelConfig(backend="llama_cpp", model=str(tmp_path / "m.gguf"))
    with pytest.raises(ModelLoadError, match="make install-llama"):
        runner_loader(config)()


def test_each_backend_gets_its_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict[str, object]] = {}

    def fake(name: str):
        def load(spec: str, **kwargs: object) -> str:
            seen[name] = {"spec": spec, **kwargs}
            return name

        return load

    from engine.model.backends.transformers_runner import TransformersRunner

    monkeypatch.setattr(TransformersRunner, "load", staticmethod(fake("transformers")))
    monkeypatch.setattr(llama_cpp_runner.LlamaCppRunner, "load", staticmethod(fake("llama")))
    env = {"MODEL": "/m.gguf", "TORCH_THREADS": "3", "LLAMA_CONTEXT_TOKENS": "2048"}
    for backend, loaded in (("transformers", "transformers"), ("llama_cpp", "llama")):
        config = ModelConfig.from_env({**env, "BACKEND": backend})
        assert config is not None
        assert runner_loader(config)() == loaded
    assert seen["transformers"]["spec"] == seen["llama"]["spec"] == "/m.gguf"
    assert seen["transformers"]["threads"] == seen["llama"]["threads"] == 3
    assert seen["llama"]["context_tokens"] == 2048
    assert "dtype" not in seen["llama"]
    assert seen["transformers"]["dtype"] == "auto"
    assert "context_tokens" not in seen["transformers"]


@pytest.mark.parametrize(
    ("env", "installed", "expected"),
    [
        ({}, True, "llama_cpp"),
        ({}, False, "transformers"),
        ({"MODEL": "~/models/other.gguf"}, True, "llama_cpp"),
        ({"MODEL": "Qwen/Qwen2.5-0.5B-Instruct"}, True, "transformers"),  # llama.cpp reads GGUF
        ({"MODEL": "./my-checkpoint"}, True, "transformers"),
        ({"SENTIMENT_METHOD": "generate"}, True, "transformers"),  # the reference method
        ({"BACKEND": "transformers"}, True, "transformers"),
        ({"BACKEND": "llama_cpp"}, False, "llama_cpp"),  # asked for: load() says what is missing
    ],
)
def test_auto_picks_llama_cpp_when_it_can_run_the_configuration(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], installed: bool, expected: str
) -> None:
    monkeypatch.setattr(backends, "find_spec", lambda name: object() if installed else None)
    config = ModelConfig.from_env(env)
    assert config is not None
    assert choose_backend(config) == expected


def test_the_openai_backend_is_a_facade_built_from_its_settings() -> None:
    from engine.model.backends.openai_api.service import OpenAIEngine
    from engine.model.config import OpenAIConfig, WorkerConfig
    from engine.model.worker import ModelWorker

    model = ModelConfig.from_env({"BACKEND": "openai", "SENTIMENT_MAX_TOKENS": "64"})
    assert model is not None
    remote = OpenAIConfig(base_url="http://127.0.0.1:9/v1", top_logprobs=7)
    limits = WorkerConfig(queue_size=3, request_timeout_s=9)
    engine = backends.model_service(model, limits, remote)
    assert isinstance(engine, OpenAIEngine)
    assert engine.config is remote
    assert (engine._queue_size, engine._timeout_s) == (3, 9)
    assert engine._options.sentiment_max_tokens == 64
    # Local backends keep the one worker thread.
    local = backends.model_service(ModelConfig(backend="llama_cpp"), limits, remote)
    assert isinstance(local, ModelWorker)


def test_the_openai_backend_has_no_local_runner_and_is_never_auto() -> None:
    with pytest.raises(ModelLoadError, match="BACKEND=openai runs the model on a server"):
        runner_loader(ModelConfig(backend="openai"))()
    assert choose_backend(ModelConfig()) in ("llama_cpp", "transformers")
