"""Storage adapters. Each keeps the raw events and the rollups that core.Rollups is rebuilt from,
and writes a batch's plan in one transaction.

A store is named by a URL (``--store``): ``sqlite:///relative/path.db`` or
``sqlite:////absolute/path.db`` (SQLAlchemy's spelling: the path is what follows the third
slash, so a fourth one makes it absolute), or ``postgresql://user@host:5432/dbname``
(``postgres://`` too; any libpq URI parameter, such as ``options=-csearch_path=NAME``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .base import HEARTBEAT_SECONDS, BatchKey, LoadedState, Store, StoreError
from .sqlite import SQLiteStore

__all__ = [
    "HEARTBEAT_SECONDS",
    "BatchKey",
    "LoadedState",
    "SQLiteStore",
    "Store",
    "StoreError",
    "open_store",
    "parse_store_url",
    "sqlite_url",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def parse_store_url(url: str) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", url)``; ValueError (one line) if malformed.

    Only the shape is checked here (no driver needed): libpq checks the rest on open.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the store URL is empty")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"malformed store URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc or not url.lower().startswith("sqlite:///"):
            raise ValueError(
                f"a SQLite store URL is sqlite:///relative/path.db or sqlite:////absolute/path.db,"
                f" not {url!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"a SQLite store URL takes no ?query or #fragment: {url!r}")
        path = unquote(url[len("sqlite:///") :])
        if not path:
            raise ValueError(f"the SQLite store URL {url!r} names no file")
        return "sqlite", path
    if scheme in POSTGRES_SCHEMES:  # no host: libpq's local socket
        return "postgresql", url
    shown = f"{scheme}://" if scheme else repr(url)
    raise ValueError(
        f"unknown store {shown}: use sqlite:///PATH or postgresql://user@host:5432/dbname"
    )


def sqlite_url(path: str) -> str:
    """The store URL of a SQLite file path (what ``--db PATH`` stands for)."""
    return "sqlite:///" + path


def open_store(url: str) -> Store:
    """Open (and, for PostgreSQL, migrate) the store a URL names. Raises StoreError, also for
    a malformed URL (the CLI checks the shape earlier, to exit 2 like other bad flags)."""
    try:
        kind, target = parse_store_url(url)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    if kind == "sqlite":
        return SQLiteStore(target)
    from .postgres import PostgresStore  # psycopg only when asked for

    return PostgresStore(target)
