"""A loopback HTTP CONNECT proxy that terminates TLS and hands the plain bytes to a fake server.

The real discord.py client talks to https://discord.com and wss://gateway.discord.gg as it
does in production; the only thing a test changes is its `proxy` (the DISCORD_PROXY
setting), so no process-wide patch of the library's endpoints is needed. The proxy answers
every CONNECT with a certificate for the requested host, issued by a throwaway test CA that
the client trusts through SSL_CERT_FILE (set in tests/conftest.py before aiohttp is
imported), then pumps bytes between that TLS session and the fake's plain port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import tempfile
from pathlib import Path

import trustme

# Every host the fakes stand in for.
HOSTS = ("discord.com", "*.discord.com", "gateway.discord.gg", "*.discord.gg", "localhost")


class LoopbackCA:
    """A CA and one server certificate for HOSTS, written where SSL_CERT_FILE can point."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert(*HOSTS)
        self.bundle = folder / "test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        return context


@functools.cache
def loopback_ca() -> LoopbackCA:
    """One CA per test process (its bundle is what SSL_CERT_FILE names)."""
    return LoopbackCA(Path(tempfile.mkdtemp(prefix="test-ca-")))


class TlsProxy:
    """Serve CONNECT on 127.0.0.1 at a free port; every tunnel goes to `target_port`."""

    def __init__(self, ca: LoopbackCA, target_port: int) -> None:
        self._context = ca.server_context()
        self.target_port = target_port
        self.refused: set[str] = set()  # hosts whose CONNECT gets a 502 (an unreachable host)
        self.tunnels: list[str] = []  # the host:port of every CONNECT, in order
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._tunnel(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # a client that hung up mid-handshake
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        host = target.rsplit(":", 1)[0]
        if method != "CONNECT" or host in self.refused:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await writer.start_tls(self._context)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        try:
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        finally:
            upstream_writer.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()
