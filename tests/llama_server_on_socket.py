"""`python tests/llama_server_on_socket.py FD <llama_cpp.server arguments>`: llama_cpp.server
serving on the listening socket inherited as file descriptor FD, which the test bound (so no
port is found free and bound again later by someone else). Run by path, not as part of the
tests package, so the server process imports nothing of the suite."""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn
from llama_cpp.server import __main__ as server


def main() -> None:
    listening = socket.socket(fileno=int(sys.argv.pop(1)))

    def run_on_the_socket(app: Any, **options: Any) -> None:
        for name in ("host", "port"):  # the socket stands in for them
            options.pop(name, None)
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[listening])

    server.uvicorn.run = run_on_the_socket
    server.main()


if __name__ == "__main__":
    main()
