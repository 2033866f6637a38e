"""Which database DATABASE_URL (or DATABASE_PATH) names, and how to show it without secrets.

Read at settings time, so it imports nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

Kind = Literal["sqlite", "postgresql"]
MEMORY = ":memory:"

_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


@dataclass(frozen=True)
class DatabaseTarget:
    kind: Kind
    location: str  # the SQLite file (or :memory:), or the full PostgreSQL URL (a secret)
    shown: str  # for logs and error messages: the path, or the URL without its password

    @classmethod
    def sqlite(cls, path: str | Path) -> DatabaseTarget:
        return cls("sqlite", str(path), str(path))

    @classmethod
    def parse(cls, value: str) -> DatabaseTarget:
        """A SQLite path, `sqlite:///path` (four slashes for an absolute path, as SQLAlchemy
        writes it), or `postgresql://user:password@host:port/database`. Raises ValueError
        with a message that never repeats the value: it may hold a password."""
        text = value.strip()
        scheme, sep, rest = text.partition("://")
        if not sep:
            if not text:
                raise ValueError("is empty")
            return cls.sqlite(text)
        scheme = scheme.lower()
        if scheme in _SQLITE_SCHEMES:
            if len(rest) < 2 or not rest.startswith("/"):
                raise ValueError("a SQLite URL is sqlite:///relative/path or sqlite:////abs/path")
            return cls.sqlite(rest[1:])
        if scheme in _POSTGRES_SCHEMES:
            parts = urlsplit(text)
            if not parts.path.strip("/"):
                raise ValueError("a PostgreSQL URL names its database: postgresql://user@host/name")
            url = urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
            return cls("postgresql", url, _redacted(parts._replace(scheme="postgresql")))
        raise ValueError(
            "takes a SQLite path, sqlite:///path or postgresql://user:password@host/database,"
            f" not a {scheme.split('+')[0]}:// URL"
        )

    @property
    def in_memory(self) -> bool:
        return self.kind == "sqlite" and self.location == MEMORY


def _redacted(parts: SplitResult) -> str:
    """The URL with its password (in the user part or the query) shown as ***."""
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))
