"""`python -m bot prepare` readies what the chosen backend reads, and says what went wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import prepare
from bot.app import EXIT_MODEL
from bot.settings import Settings
from engine.errors import ModelLoadError
from engine.model import model_files
from engine.model.model_files import ModelSource


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def gguf(spec: str, cache: Path) -> tuple[Path, str]:
        seen.append(f"gguf {spec}")
        return cache / "m.gguf", "m (packaged)"

    def folder(spec: str, cache: Path) -> ModelSource:
        seen.append(f"convert {spec}")
        return ModelSource(str(cache / "converted"), True, "m (packaged)")

    monkeypatch.setattr(model_files, "resolve_gguf", gguf)
    monkeypatch.setattr(model_files, "resolve_model", folder)
    return seen


@pytest.mark.parametrize(("backend", "step"), [("llama_cpp", "gguf"), ("transformers", "convert")])
def test_prepare_readies_what_the_backend_reads(
    calls: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, step: str
) -> None:
    settings = Settings.from_env({"BACKEND": backend, "MODEL": "packaged-1.5b",
                                  "MODEL_CACHE_DIR": str(tmp_path)})  # fmt: skip
    assert prepare(settings) == 0
    assert calls == [f"{step} packaged-1.5b"]
    assert "model ready: m (packaged)" in capsys.readouterr().out


def test_prepare_reports_a_model_that_cannot_be_had(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(spec: str, cache: Path) -> ModelSource:
        raise ModelLoadError("the packaged model chunk is missing: run `make install`")

    monkeypatch.setattr(model_files, "resolve_model", missing)
    settings = Settings.from_env({"BACKEND": "transformers", "MODEL": "packaged-1.5b",
                                  "MODEL_CACHE_DIR": str(tmp_path)})  # fmt: skip
    assert prepare(settings) == EXIT_MODEL
    assert "run `make install`" in caplog.text
