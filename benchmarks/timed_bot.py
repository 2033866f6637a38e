"""`python -m benchmarks.timed_bot …`: `python -m bot` as it is, plus the model worker's stage
records (engine.model.timings) written as JSON lines to $BENCH_TIMINGS_PATH, for
benchmarks.load.load's platform mode. BENCH_SCRIPTED=1 runs it on the tests' scripted model (the
bench's own test).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any, TextIO


class JsonLines(logging.Handler):
    """Each engine.model.timings record as one JSON object: its type, then its fields."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and dataclasses.is_dataclass(record.args[0]):
            item: Any = record.args[0]
            line = {"type": type(item).__name__, **dataclasses.asdict(item)}
            self.out.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self.out.close()
        super().close()


def listen(path: str) -> None:
    logger = logging.getLogger("engine.model.timings")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # not into the bot's own log
    logger.addHandler(JsonLines(open(path, "a", buffering=1, encoding="utf-8")))  # noqa: SIM115


def main() -> int:
    from bot.__main__ import main as bot_main

    if path := os.environ.get("BENCH_TIMINGS_PATH"):
        listen(path)
    if os.environ.get("BENCH_SCRIPTED") == "1":
        from tests.scripted_bot import runner

        return bot_main(runner_factory=runner)
    return bot_main()


if __name__ == "__main__":
    sys.exit(main())
