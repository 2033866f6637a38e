"""A real OpenAI-compatible server for the tests: `python -m llama_cpp.server` (the `[server]`
extra of the llama-cpp-python the project builds) on 127.0.0.1 with the packaged GGUF,
started by a fixture and stopped after it.

`--interrupt_requests False`: by default that server abandons a streaming reply whenever
another request arrives, so a label would cut someone else's reply short.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# What `python -m llama_cpp.server` imports beyond llama_cpp itself (the [server] extra).
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")
MODEL_ALIAS = "qwen-packaged"


def require_server() -> None:
    """Skip when the server cannot run here; with REQUIRE_LLAMA_CPP=1 (CI) the session has
    already failed instead (tests/conftest.py)."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama_cpp.server needs {', '.join(missing)}: make install-llama")


def packaged_gguf_path() -> Path:
    from engine.model.model_files import LIGHT_MODEL, default_cache_dir, packaged_gguf

    # The light tier: these tests are about the server protocol, not the model.
    cache = os.environ.get("MODEL_CACHE_DIR")
    return packaged_gguf(Path(cache).expanduser() if cache else default_cache_dir(), LIGHT_MODEL)


@dataclass
class LlamaServer:
    url: str  # the OpenAI API root, …/v1
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def llama_server(log: Path, *, api_key: str | None = None) -> Iterator[LlamaServer]:
    require_server()
    port = _free_port()
    threads = str(os.cpu_count() or 1)  # as the in-process backend (its default uses half)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf_path()),
        "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
        "--interrupt_requests", "False", "--n_ctx", "4096",
        "--n_threads", threads, "--n_threads_batch", threads,
    ]  # fmt: skip
    if api_key is not None:
        command += ["--api_key", api_key]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", process, log)
    try:
        deadline = time.monotonic() + 180
        while not _listening(server.url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"llama_cpp.server did not start:\n{server.log_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
