"""``metrics-tui export``: a range of past figures to CSV or JSON, fetched over REST in pages.

No Textual here. The flags are read in cli.py (from settings.EXPORT_FLAGS); this module
fetches and writes. Pages hold at most MAX_RANGE_POINTS points each (history.fetch_pages); a
progress bar is drawn on standard error when that is a terminal and the range takes more than
one page, and never otherwise, so a pipe or a file gets the data alone.
"""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
from collections.abc import Callable
from typing import TextIO

from metrics_protocol.wire import MAX_RANGE_POINTS, Range, encode_range, range_csv
from metrics_tui.history import (
    Progress,
    RangeError,
    estimate_points,
    fetch_pages,
    fetch_range_rest,
    history_url,
    parse_endpoint,
)
from metrics_tui.wire import describe_error, http_client, is_unauthorized

#: Seconds one page may take.
PAGE_TIMEOUT = 30.0


class ExportFailed(Exception):
    """The export could not be made; ``code`` is the exit code (1: server, 2: arguments)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


async def fetch(
    url: str,
    token: str | None,
    tls: ssl.SSLContext | None,
    start: str,
    end: str,
    step: str,
    progress: Progress | None = None,
) -> Range:
    """The whole range; raises ExportFailed with a one-line reason."""
    import httpx

    route = history_url(url)
    try:
        async with http_client(token, tls, PAGE_TIMEOUT) as http:

            async def page(a: str, b: str) -> object:
                return await fetch_range_rest(http, route, a, b, step)

            return await fetch_pages(page, start, end, step, progress)
    except RangeError as exc:
        raise ExportFailed(f"the server refused the range: {exc}", 2) from None
    except (httpx.HTTPError, OSError, ValueError) as exc:
        reason = describe_error(exc)
        if is_unauthorized(exc):
            reason += ", check --token"
        raise ExportFailed(reason, 1) from None


def pages_needed(start: str, end: str, step: str) -> bool:
    """Whether the range will take more than one request (then a terminal gets a bar)."""
    a, b = parse_endpoint(start), parse_endpoint(end)
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return estimate_points(a, b, step) > MAX_RANGE_POINTS - 2


def render(answer: Range, fmt: str) -> str:
    """The server's own forms: its range message (without an id), or its CSV."""
    return encode_range(answer) + "\n" if fmt == "json" else range_csv(answer)


def write(text: str, output: str | None, stdout: TextIO | None = None) -> None:
    """To standard output, or to ``output`` whole: a file is written beside it and renamed, so
    it never holds half an export."""
    if output is None or output == "-":
        out = stdout or sys.stdout
        out.write(text)
        out.flush()
        return
    folder = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".export-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise


def progress_bar(total_hint: int) -> tuple[Progress, Callable[[], None]]:
    """A rich progress bar on standard error: (callback, stop)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "points",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    task = bar.add_task("fetch", total=total_hint)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop
