"""Slow subscribers: a client that stops reading must not make the server buffer without bound,
nor slow the others down.

The server pushes every change (``--push-interval 0``) while a producer sends a small batch
every 5 ms, i.e. ~200 metrics messages a second to every subscriber. Rounds alternate, in the
same run, between the normal subscribers alone and the same plus one stuck client: a raw socket
with a 4 KB receive buffer that completes the handshake and then never reads again. For each we
report the normal subscribers' latency percentiles (batch sent -> receipt) and the server's RSS
growth over the window, next to the bytes pushed to each subscriber in it: an unbounded buffer
for the stuck client would grow by about that much; the hub skips a subscriber with more than
64 KiB queued, so the growth must match the run without it. The
``--full`` run is long enough (60 s) for the protocol keepalive (20 s ping + 20 s timeout) to
close the stuck connection, which is reported.

    python -m bench.slow_subscriber [--full]
    python -m bench.slow_subscriber --baseline SRC   # also a server from SRC, rounds alternating
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench import _common as c
from bench import latency


def stuck_client(port: int) -> socket.socket:
    """Handshake, then never read: everything sent to it piles up on the server's side."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((c.HOST, port))
    s.sendall(
        (
            f"GET /ws/metrics HTTP/1.1\r\nHost: {c.HOST}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: read nothing past the handshake response
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


class Sampler(threading.Thread):
    """Server RSS every ``every`` seconds, and whether the stuck connection is still open."""

    def __init__(self, proc: psutil.Process, port: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.proc, self.port, self.every = proc, port, every
        self.rss: list[tuple[float, int]] = []
        self.watch: int | None = None  # the stuck client's local port
        self.closed_after: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.wait(self.every):
            now = time.perf_counter() - t0
            self.rss.append((now, self.proc.memory_info().rss))
            if self.watch is not None and self.closed_after is None:
                open_ = any(
                    k.raddr and k.raddr.port == self.watch and k.status == psutil.CONN_ESTABLISHED
                    for k in self.proc.net_connections("tcp")
                )
                if not open_:
                    self.closed_after = now


def run(
    *,
    subscribers: int = 20,
    duration: float = 20.0,
    rounds: int = 2,
    baseline: str | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Returns, worst round of each mode, the others' latency percentiles (ms, send -> receipt)
    and the server's RSS growth over the window (MB), next to the bytes pushed per subscriber.
    ``baseline``: a second server, from that ``src/`` tree, measured in the same rounds (its
    figures under keys that start with ``baseline_``)."""
    c.raise_nofile()
    res: dict[str, list[dict[str, float]]] = {"alone": [], "stuck": []}
    if baseline:
        res |= {"baseline_alone": [], "baseline_stuck": []}
    closed: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers: dict[str, tuple[int, psutil.Process]] = {}
        for name, src in (("", None), ("baseline_", baseline)):
            if name and not src:
                continue
            port = c.free_port()
            servers[name] = (
                port,
                stack.enter_context(
                    c.metrics_server(
                        port, Path(tmp, f"{name}s.db"), interval=3600, push_interval=0, src=src
                    )
                ),
            )
        for r in range(rounds):
            for mode in ("alone", "stuck"):
                for name, (port, srv) in servers.items():
                    sampler = Sampler(srv, port)
                    held: list[socket.socket] = []

                    def attach(
                        mode: str = mode,
                        held: list[socket.socket] = held,
                        sampler: Sampler = sampler,
                        port: int = port,
                    ) -> None:
                        if mode == "stuck":
                            s = stuck_client(port)
                            held.append(s)
                            sampler.watch = s.getsockname()[1]
                        sampler.start()

                    # From the send, not the ack: with every change pushed, most messages
                    # arrive before the ack, and ack-relative figures would all clamp to 0.
                    out = latency.measure(
                        port,
                        subscribers=subscribers,
                        rate=1000,
                        batch=5,
                        duration=duration,
                        during=attach,
                        origin="send",
                    )
                    sampler.stop.set()
                    sampler.join()
                    for s in held:
                        s.close()
                    rss = [v for _, v in sampler.rss]
                    out["rss_growth_mb"] = (max(rss) - rss[0]) / 2**20
                    out["pushed_mb"] = out["bytes_per_sub"] / 2**20
                    res[name + mode].append(out)
                    if sampler.closed_after is not None and not name:
                        closed.append(sampler.closed_after)
                    if verbose:
                        print(
                            f"round {r + 1} {name}{mode:<5}: {latency.fmt(out)}; server RSS"
                            f" +{out['rss_growth_mb']:.2f} MB while {out['pushed_mb']:.2f} MB"
                            " was pushed to each subscriber"
                            + (
                                f"; the stuck client was closed after {sampler.closed_after:.0f} s"
                                if sampler.closed_after is not None
                                else ""
                            ),
                            flush=True,
                        )
    worst = {m: {k: max(x[k] for x in v) for k in v[0]} for m, v in res.items()}
    keys = ("p50", "p99", "rss_growth_mb", "missing")  # missing: messages the others did not get
    summary = {f"{m}_{k}": worst[m][k] for m in worst for k in keys}
    summary["pushed_mb"] = min(x["pushed_mb"] for x in res["stuck"])
    summary["closed_after_s"] = min(closed) if closed else float("nan")
    if verbose:
        for name in servers:
            print(
                f"{name.rstrip('_') or 'metrics-server'}: others' latency (send -> receipt),"
                f" worst round: alone p50 {summary[name + 'alone_p50']:.1f}"
                f" / p99 {summary[name + 'alone_p99']:.1f} ms; with the stuck client p50"
                f" {summary[name + 'stuck_p50']:.1f} / p99 {summary[name + 'stuck_p99']:.1f} ms."
                f" Server RSS growth per window: alone +{summary[name + 'alone_rss_growth_mb']:.2f}"
                f" MB, with the stuck client +{summary[name + 'stuck_rss_growth_mb']:.2f} MB, while"
                f" {summary['pushed_mb']:.2f} MB was pushed to each subscriber (what an unbounded"
                " buffer for the stuck one would add)."
            )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="60 s windows: keepalive closes the client")
    c.add_baseline_arg(ap)
    args = ap.parse_args()
    c.print_header("a subscriber that stops reading")
    run(duration=60.0 if args.full else 20.0, baseline=args.baseline)


if __name__ == "__main__":
    main()
