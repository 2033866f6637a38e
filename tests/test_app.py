"""bot.app.load_runner: the configured backend is the one loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import app
from bot.app import choose_backend, load_runner
from bot.settings import Settings
from engine import llama_cpp_runner
from engine.runner import ModelLoadError


def test_the_llama_backend_without_its_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llama_cpp_runner, "llama_cpp", None)
    settings = Settings.from_env({"BACKEND": "llama_cpp", "MODEL": str(tmp_path / "m.gguf")})
    with pytest.raises(ModelLoadError, match="make install-llama"):
        load_runner(settings)()


def test_each_backend_gets_its_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict[str, object]] = {}

    def fake(name: str):  # type: ignore[no-untyped-def]
        def load(spec: str, **kwargs: object) -> str:
            seen[name] = {"spec": spec, **kwargs}
            return name

        return load

    from engine.transformers_runner import TransformersRunner

    monkeypatch.setattr(TransformersRunner, "load", staticmethod(fake("transformers")))
    monkeypatch.setattr(llama_cpp_runner.LlamaCppRunner, "load", staticmethod(fake("llama")))
    env = {"MODEL": "/m.gguf", "TORCH_THREADS": "3", "LLAMA_CONTEXT_TOKENS": "2048"}
    assert load_runner(Settings.from_env({**env, "BACKEND": "transformers"}))() == "transformers"
    assert load_runner(Settings.from_env({**env, "BACKEND": "llama_cpp"}))() == "llama"
    assert seen["transformers"]["spec"] == seen["llama"]["spec"] == "/m.gguf"
    assert seen["transformers"]["threads"] == seen["llama"]["threads"] == 3
    assert seen["llama"]["context_tokens"] == 2048 and "dtype" not in seen["llama"]
    assert seen["transformers"]["dtype"] == "auto" and "context_tokens" not in seen["transformers"]


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
    monkeypatch.setattr(app, "find_spec", lambda name: object() if installed else None)
    assert choose_backend(Settings.from_env(env)) == expected
