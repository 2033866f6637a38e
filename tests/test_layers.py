"""The layout's rules, read from the imports of every module (lazy imports included).

The shipped packages are `bot/ adapters/ engine/ storage/`; `engine/` holds the shared types
and ports at its top (`engine/*.py`), the chat logic (`engine/chat/`) and the model runtime
(`engine/model/`).
- the engine's types and ports import nothing of the project but each other;
- the model runtime never imports the chat logic, the adapters, the store or the wiring;
- the chat logic never imports a platform SDK, a model library, the model runtime or SQL;
- adapters never import the model runtime, the store or a model library;
- storage knows only the engine's types and ports;
- nothing shipped imports the benchmarks, the scripts or the tests;
- no module imports itself through others (no import cycle, type-only imports counted).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("bot", "adapters", "engine", "storage")
PLATFORM_SDKS = {"telegram", "discord", "aiohttp"}
MODEL_LIBRARIES = {"torch", "transformers", "llama_cpp", "numpy"}
SQL = {"sqlite3", "aiosqlite", "sqlalchemy", "asyncpg", "alembic"}
NOT_SHIPPED = {"benchmarks", "scripts", "tests"}
CHAT, MODEL = "engine.chat", "engine.model"

# Layer → the module prefixes (or top-level packages) it must not import.
FORBIDDEN: dict[str, set[str]] = {
    "engine": {CHAT, MODEL, "adapters", "storage", "bot"} | NOT_SHIPPED | PLATFORM_SDKS
    | MODEL_LIBRARIES | SQL,
    MODEL: {CHAT, "adapters", "storage", "bot"} | NOT_SHIPPED | PLATFORM_SDKS | SQL,
    CHAT: {MODEL, "adapters", "storage", "bot"} | NOT_SHIPPED | PLATFORM_SDKS
    | MODEL_LIBRARIES | SQL,
    "adapters": {MODEL, "storage", "bot"} | NOT_SHIPPED | MODEL_LIBRARIES | SQL,
    "storage": {CHAT, MODEL, "adapters", "bot"} | NOT_SHIPPED | PLATFORM_SDKS
    | MODEL_LIBRARIES,
    "bot": NOT_SHIPPED,
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it, by its full dotted name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            # `from engine.model import worker` imports engine.model.worker
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def crosses(name: str, forbidden: set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)


def layer_of(path: Path) -> str:
    """The layer a module belongs to: engine/chat and engine/model are layers of their own."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "engine" and len(parts) > 2 and parts[1] in ("chat", "model"):
        return f"engine.{parts[1]}"
    return parts[0]


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", SHIPPED)
def test_each_layer_imports_only_what_it_may(package: str) -> None:
    crossings: dict[str, list[str]] = {}
    for path in modules_of(package):
        found = sorted(n for n in imported_modules(path) if crosses(n, FORBIDDEN[layer_of(path)]))
        if found:
            crossings[str(path.relative_to(ROOT))] = found
    assert crossings == {}


def test_the_rule_sees_lazy_imports_and_names_imported_from_a_package(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from engine.model import worker\n    import torch\n")
    found = imported_modules(module)
    assert {"engine.model.worker", "torch"} <= found
    assert crosses("engine.model.worker", FORBIDDEN[CHAT])
    assert not crosses("engine.types", FORBIDDEN[CHAT])


def test_a_chat_module_importing_the_model_runtime_is_caught() -> None:
    chat_module = ROOT / "engine" / "chat" / "service.py"
    assert layer_of(chat_module) == CHAT
    assert layer_of(ROOT / "engine" / "types.py") == "engine"
    assert crosses("engine.model.worker", FORBIDDEN[layer_of(chat_module)])


def test_every_package_is_covered() -> None:
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert found == set(SHIPPED) | NOT_SHIPPED
    engine = {p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").is_file()}
    assert engine == {"chat", "model"}


def import_cycle(root: Path, packages: tuple[str, ...]) -> list[str] | None:
    """A cycle among the modules of `packages` under `root` (type-only and lazy imports
    included: such modules still cannot be read apart), or None."""
    paths = {
        ".".join(parts[:-1] if parts[-1] == "__init__" else parts): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if (parts := path.relative_to(root).with_suffix("").parts)
    }
    graph = {
        name: {n for n in imported_modules(path) if n in paths and n != name}
        for name, path in paths.items()
    }
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycle(ROOT, (*SHIPPED, "benchmarks", "scripts")) is None


def test_a_cycle_through_a_lazy_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import B\n")
    (tmp_path / "pkg" / "b.py").write_text("B = 1\ndef f():\n    from pkg import a\n")
    assert import_cycle(tmp_path, ("pkg",)) in (["pkg.a", "pkg.b", "pkg.a"],
                                                ["pkg.b", "pkg.a", "pkg.b"])  # fmt: skip
    (tmp_path / "pkg" / "b.py").write_text("B = 1\n")
    assert import_cycle(tmp_path, ("pkg",)) is None
