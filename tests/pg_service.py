"""PostgreSQL for the tests: the shared server (a schema per test) and a private one to stop.

``METRICS_TEST_POSTGRES`` names the shared server (default
postgresql://postgres@127.0.0.1:5432/test). Every schema a run makes is named
``mt_<run>_<n>`` and dropped at the end. Where PostgreSQL (or psycopg) is missing the tests skip
with the reason, unless ``METRICS_REQUIRE_SERVICES=1`` (CI), where they fail.

Imported by conftest.py, which makes these fixtures visible to every test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

POSTGRES_URL = os.environ.get("METRICS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    return os.environ.get("METRICS_REQUIRE_SERVICES", "").strip() == "1"


def missing(reason: str) -> None:
    """Skip, or fail when the run requires its services (CI)."""
    if services_required():
        pytest.fail(f"{reason} (METRICS_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def with_schema(url: str, schema: str) -> str:
    """``url`` with its connections' search_path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


class Postgres:
    """A reachable server: makes schemas (each a store's own world) and drops them at the end."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.prefix = f"mt_{secrets.token_hex(4)}"
        self._n = 0
        self._mutex = threading.Lock()
        self._admin = psycopg.connect(url, autocommit=True, connect_timeout=3)

    def schema(self) -> str:
        with self._mutex:
            self._n += 1
            name = f"{self.prefix}_{self._n}"
            self._admin.execute(f'CREATE SCHEMA "{name}"')
        return name

    def store_url(self, schema: str | None = None) -> str:
        """A URL whose connections see a new (or the given) schema only."""
        return with_schema(self.url, schema or self.schema())

    def drop(self, schema: str) -> None:
        with self._mutex:
            self._admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def query(self, sql: str, params: tuple = (), schema: str | None = None) -> list[tuple]:
        with self._mutex:
            if schema:
                self._admin.execute(f'SET search_path TO "{schema}"')
            try:
                cur = self._admin.execute(sql, params)
                return cur.fetchall() if cur.description else []
            finally:
                if schema:
                    self._admin.execute("RESET search_path")

    def stored(self, schema: str) -> tuple[dict[str, int], dict[int, int]]:
        """The counters and the non-empty revenue buckets, as the store keeps them."""
        counters = dict(self.query("SELECT name, value FROM counters", schema=schema))
        buckets = self.query(
            "SELECT bucket, cents FROM revenue_buckets WHERE cents <> 0", (), schema
        )
        return counters, dict(buckets)

    def recount(self, schema: str) -> tuple[dict[str, int], dict[int, int]]:
        """The same, recomputed by brute force from the raw events, in commit order."""
        rows = self.query(
            "SELECT type, txn_id, status, amount_cents, ts FROM events ORDER BY seq", (), schema
        )
        return recount(rows)

    def close(self) -> None:
        rows = self._admin.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (self.prefix + "\\_%",)
        ).fetchall()
        for (name,) in rows:
            self._admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        self._admin.close()


def recount(rows: list[tuple]) -> tuple[dict[str, int], dict[int, int]]:
    """Counters and revenue buckets from raw event rows (type, txn id, status, cents, ts): a
    transaction's amount is its first event's, its status its last event's, its revenue
    counted in the bucket of the event that completed it."""
    status: dict[str, str] = {}
    amount: dict[str, int] = {}
    done_at: dict[str, float] = {}
    views = 0
    for kind, tid, st, cents, ts in rows:
        views += kind == "content_view"
        if kind != "transaction":
            continue
        amount.setdefault(tid, cents)
        status[tid] = st
        if st == "completed":
            done_at.setdefault(tid, ts)
    buckets: dict[int, int] = {}
    for tid, ts in done_at.items():
        buckets[int(ts // 900)] = buckets.get(int(ts // 900), 0) + amount[tid]
    states = list(status.values())
    counters = {
        "views": views,
        "txn_total": len(status),
        "pending": states.count("pending"),
        "completed": states.count("completed"),
        "failed": states.count("failed"),
        "revenue_cents": sum(amount[t] for t in done_at),
    }
    return counters, {b: c for b, c in buckets.items() if c}


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The shared PostgreSQL server, or a skip (a failure in CI) saying why not."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        missing("psycopg is not installed: pip install -e '.[test]' (the scale extra)")
    try:
        pg = Postgres(POSTGRES_URL)
    except Exception as exc:  # psycopg.OperationalError and kin
        missing(f"PostgreSQL unreachable at {POSTGRES_URL}: {' '.join(str(exc).split())}")
    yield pg
    pg.close()


@pytest.fixture
def pg_schema(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty schema, dropped after the test."""
    name = postgres.schema()
    yield name
    postgres.drop(name)


@pytest.fixture
def pg_url(postgres: Postgres, pg_schema: str) -> str:
    """A store URL on a fresh schema of the shared server."""
    return postgres.store_url(pg_schema)


# --------------------------------------------------------------------------- a private server


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A ``postgres`` of this test run's own, on a free port, that tests may stop and start.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user
    (``runuser``, else ``su``); otherwise it runs as whoever runs the tests.
    """

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl and _pg_bin("postgres")):
            missing("initdb, pg_ctl or postgres not found (PATH or /usr/lib/postgresql/*/bin)")
        self.home = Path(tempfile.mkdtemp(prefix="metrics-pg-"))
        self.data = self.home / "data"
        self.log = self.home / "log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                import pwd

                pw = pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and there is no 'postgres' user to own a test cluster")
            os.chown(self.home, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            self._as = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
        self._run(
            self.initdb, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
            "--no-locale", "-D", str(self.data),
        )  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, *args: str) -> None:
        cmd = [*self._as, *args]
        if self._as[:1] == ["su"]:
            cmd = [*self._as, shlex.join(args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {proc.stderr.strip()} {log[-2000:]}")

    def start(self) -> None:
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
            "-o", f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, open transactions rolled back."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        missing(f"cannot run a private postgres: {' '.join(str(exc).split())[:500]}")
    yield pg
    pg.close()


# --------------------------------------------------------------------------- both stores


class Stores:
    """Opens stores of one kind; each ``name`` is a separate store (a file, or a schema), and
    opening a name again is a restart on the same data."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._tmp = tmp_path
        self._pg: Postgres | None = None
        self._schemas: dict[str, str] = {}
        if kind == "postgres":
            self._pg = request.getfixturevalue("postgres")

    def location(self, name: str = "m") -> str:
        """The SQLite path or the PostgreSQL URL of store ``name``."""
        if self._pg is None:
            return str(self._tmp / f"{name}.db")
        if name not in self._schemas:
            self._schemas[name] = self._pg.schema()
        return self._pg.store_url(self._schemas[name])

    def schema(self, name: str = "m") -> str:
        self.location(name)
        return self._schemas[name]

    def open(self, name: str = "m") -> Any:
        """A new store object (a fast lock timeout, so that a blocked write fails quickly)."""
        if self._pg is None:
            from metrics_server.store import SQLiteStore

            return SQLiteStore(self.location(name), busy_timeout_ms=50)
        from metrics_server.store.postgres import PostgresStore

        return PostgresStore(self.location(name), lock_timeout=0.2)

    @contextlib.contextmanager
    def writes_blocked(self, name: str = "m") -> Iterator[None]:
        """Another writer holds the store (an exclusive SQLite transaction; another session
        holding PostgreSQL's write lock) until the block ends."""
        if self._pg is None:
            import sqlite3

            other = sqlite3.connect(self.location(name), isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                other.execute("ROLLBACK")
                other.close()
            return
        import psycopg

        from metrics_server.store.postgres import LOCK_WRITE, lock_key

        with psycopg.connect(self.location(name), autocommit=True) as other:
            other.execute(
                "SELECT pg_advisory_lock(%s, %s)", (LOCK_WRITE, lock_key(self.schema(name)))
            )
            yield

    def drop(self, name: str = "m") -> None:
        """Drop store ``name``'s schema now (closed first), for tests that make many."""
        schema = self._schemas.pop(name, None)
        if self._pg is not None and schema is not None:
            self._pg.drop(schema)

    def close(self) -> None:
        if self._pg is not None:
            for schema in self._schemas.values():
                self._pg.drop(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The store contract: a test taking ``stores`` runs once on each store."""
    kit = Stores(request.param, tmp_path, request)
    yield kit
    kit.close()
