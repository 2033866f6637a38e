"""`python -m bot prepare` readies what the chosen backend reads, and says what went wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import prepare
from bot.app import EXIT_MODEL
from bot.settings import Settings
from engine.errors import ModelLoadError
from engine.model import model_files
from engine.model.model_files import PACKAGED_MODELS, ModelSource
from tests.packaged_fakes import install_fake_tiers, mark_converted


@pytest.mark.parametrize("backend", ["llama_cpp", "transformers"])
def test_prepare_readies_what_the_backend_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:  # fmt: skip
    joined = install_fake_tiers(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    model = PACKAGED_MODELS["packaged-1.5b"]
    gguf = cache / f"{model.name}.gguf"
    folder = mark_converted(gguf, cache) if backend == "transformers" else None
    settings = Settings.from_env({"BACKEND": backend, "MODEL": "packaged-1.5b",
                                  "MODEL_CACHE_DIR": str(cache)})  # fmt: skip
    assert prepare(settings) == 0
    assert gguf.read_bytes() == joined["packaged-1.5b"]  # both backends start from the GGUF
    # llama.cpp reads the GGUF as it is; transformers its conversion.
    ready = gguf if folder is None else folder
    assert capsys.readouterr().out == f"model ready: {model.name} (packaged) -> {ready}\n"


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
