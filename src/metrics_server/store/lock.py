"""One server per database file: an OS lock on a sidecar ``<db>.lock`` that holds the PID.

Two servers on one file would each count only their own writes and double-count retried ids
(issue 8: 200 completed ids sent to both were counted twice). ``flock`` is used, not SQLite's
own locks: SQLite takes POSIX record locks, which the process loses when *any* descriptor of the
file is closed, and which it only holds during a transaction. A ``flock`` lock belongs to the
open file description, is independent of those, and the kernel drops it when the process dies,
so ``kill -9`` leaves no stale lock. The lock file is never deleted: unlinking it while another
process waits on it would let a third lock a fresh file beside them.
"""

from __future__ import annotations

import contextlib
import os

from .base import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the lock is not taken there
    fcntl = None  # type: ignore[assignment]


class DatabaseLock:
    """Held from construction until :meth:`release` (or the process's end)."""

    def __init__(self, db_path: str) -> None:
        # Next to the real file, so a symlinked or relative path finds the same lock.
        self.path = os.path.realpath(db_path) + ".lock"
        self._fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open database {db_path!r}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "pid unknown"
            raise StoreError(
                f"database {db_path!r} is in use by another metrics-server ({who})"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # the lock is what counts; the PID is only for the message
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    """The holder's PID, or None when it has not written it yet (it locks first)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
