"""Every test here runs the bot as a process (`python -m bot`, or tests.scripted_bot on the
scripted model): all of them are `slow`, new ones included."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)
