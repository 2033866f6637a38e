"""The layout's rules, read from the imports of every module (lazy imports included).

- core imports none of the other packages;
- the runtime never imports the chat logic, the adapters, the store or the wiring;
- the chat logic never imports a platform SDK, a model library, the runtime or SQL;
- adapters never import the runtime, the store or a model library;
- storage knows only core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "chat", "runtime", "adapters", "storage", "bot")
PLATFORM_SDKS = {"telegram", "discord", "aiohttp"}
MODEL_LIBRARIES = {"torch", "transformers", "llama_cpp", "numpy"}
SQL = {"sqlite3", "aiosqlite", "sqlalchemy", "asyncpg"}

FORBIDDEN: dict[str, set[str]] = {
    "core": {"chat", "runtime", "adapters", "storage", "bot", "bench"} | PLATFORM_SDKS
    | MODEL_LIBRARIES | SQL,
    "runtime": {"chat", "adapters", "storage", "bot", "bench"} | PLATFORM_SDKS | SQL,
    "chat": {"runtime", "adapters", "storage", "bot", "bench"} | PLATFORM_SDKS
    | MODEL_LIBRARIES | SQL,
    "adapters": {"runtime", "storage", "bot", "bench"} | MODEL_LIBRARIES | SQL,
    "storage": {"chat", "runtime", "adapters", "bot", "bench"} | PLATFORM_SDKS
    | MODEL_LIBRARIES,
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Top-level names of everything a module imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_imports_only_what_its_layer_allows(package: str) -> None:
    crossings = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN[package])
        for path in modules_of(package)
    }
    assert {name: found for name, found in crossings.items() if found} == {}


def test_the_rule_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from engine.model.worker import ModelWorker\n    import torch\n"
    )
    assert imported_modules(module) == {"runtime", "torch"}


def test_every_package_is_covered() -> None:
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert found - {"tests", "bench"} == set(PACKAGES)
    assert set(FORBIDDEN) == set(PACKAGES) - {"bot"}  # bot wires everything together
