"""A real OpenAI-compatible server for the tests: llama_cpp.server (the `[server]` extra of
the llama-cpp-python the project builds) with the packaged GGUF, serving on a socket bound
here on 127.0.0.1 (tests/llama_server_on_socket.py), started by a fixture and stopped after.

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

from tests.support import model_threads

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


def _listening(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def llama_server(log: Path, *, api_key: str | None = None) -> Iterator[LlamaServer]:
    require_server()
    # Bound here and inherited: the server never binds a port of its own.
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(128)
    port = listening.getsockname()[1]
    # All cores as the in-process backend (the server's default uses half); under xdist, this
    # worker's share of them.
    threads = str(model_threads() or os.cpu_count() or 1)
    command = [
        sys.executable, str(Path(__file__).with_name("llama_server_on_socket.py")),
        str(listening.fileno()), "--model", str(packaged_gguf_path()),
        "--model_alias", MODEL_ALIAS, "--interrupt_requests", "False", "--n_ctx", "4096",
        "--n_threads", threads, "--n_threads_batch", threads,
    ]  # fmt: skip
    if api_key is not None:
        command += ["--api_key", api_key]
    with log.open("wb") as out, listening:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   pass_fds=[listening.fileno()])  # fmt: skip
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
