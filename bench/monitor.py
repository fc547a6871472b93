"""The monitor: CPU, RSS and time to first figures, against a bare Textual app, side by side.

A metrics-server (``--interval 1``: one update a second) holds one completed $4,321.09
transaction. In the same run, each in its own tmux session (80x24, a real pty), run
``metrics-tui --url ...`` and the reference: a bare Textual app with 4 Static and 2 Sparkline
widgets updated once a second. Over the same window, CPU seconds of each process come from psutil.
First figures: from launch until ``tmux capture-pane`` shows "4,321"; the reference's first
paint (its first Static text) is timed the same way. Targets: CPU <= 2x the reference,
RSS <= 60 MB, first figures <= 1 s.

    python -m bench.monitor            # one 60 s window
    python -m bench.monitor --full     # three 60 s windows
    python -m bench.monitor --window 20 # a shorter window, while iterating
    python -m bench.monitor --monitor-src DIR  # the monitor from another src/ tree (before/after)
    python -m bench.monitor --baseline SRC  # also SRC's monitor and server, the same windows
    python -m bench.monitor --reference-app    # (what the bench runs as the reference)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from websockets.asyncio.client import connect

from bench import _common as c

FIGURE = "4,321"  # how the monitor writes the seeded revenue ($4,321.09)
REF_MARK = "ref-ready"


def reference_app() -> None:
    """4 Static and 2 Sparkline widgets, new values once a second: the floor for a Textual app
    that shows this much and updates at this rate."""
    from textual.app import App, ComposeResult
    from textual.widgets import Sparkline, Static

    class Ref(App[None]):
        def compose(self) -> ComposeResult:
            for i in range(4):
                yield Static(f"{REF_MARK} {i}", id=f"s{i}")
            for i in range(2):
                yield Sparkline([0.0] * 20, id=f"k{i}")

        def on_mount(self) -> None:
            self.set_interval(1.0, self.tick)

        def tick(self) -> None:
            for i in range(4):
                self.query_one(f"#s{i}", Static).update(
                    f"{REF_MARK} {i}: ${random.randint(0, 10**6):,}.{random.randint(0, 99):02d}"
                )
            for i in range(2):
                spark = self.query_one(f"#k{i}", Sparkline)
                spark.data = [*list(spark.data or [])[1:], random.random() * 100]

    Ref().run()


class Tmux:
    """A private tmux server (its own socket), so nothing else's sessions are touched."""

    def __init__(self) -> None:
        self.sock = f"metrics-bench-{os.getpid()}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.sock, *args], check=True, capture_output=True, text=True
        ).stdout

    def start(self, name: str, argv: list[str]) -> psutil.Process:
        cmd = " ".join(f"'{a}'" for a in argv)
        self("new-session", "-d", "-s", name, "-x", "80", "-y", "24", "-c", str(c.ROOT), cmd)
        proc = psutil.Process(int(self("display-message", "-p", "-t", name, "#{pane_pid}")))
        for _ in range(50):  # a shell that did not exec: the app is its child
            if "python" in proc.name() or not proc.children():
                break
            proc = proc.children()[0]
        return proc

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def kill(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self("kill-server")


@contextlib.contextmanager
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.kill()


async def seed(port: int) -> None:
    async with connect(f"ws://{c.HOST}:{port}/ws/ingest") as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "events",
                    "id": 1,
                    "events": [
                        {
                            "type": "transaction",
                            "id": "t1",
                            "status": "pending",
                            "amount": "4321.09",
                            "userId": "u1",
                        },
                        {"type": "transaction", "id": "t1", "status": "completed"},
                    ],
                }
            )
        )
        assert '"ack"' in str(await ws.recv())


def wait_for(t: Tmux, name: str, text: str, t0: float, timeout: float = 20) -> float:
    while time.perf_counter() - t0 < timeout:
        if text in t.screen(name):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise TimeoutError(f"{text!r} not on screen after {timeout} s:\n{t.screen(name)}")


def run(
    *,
    window: float = 60.0,
    windows: int = 1,
    settle: float = 2.0,
    monitor_src: str | None = None,
    baseline: str | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Returns CPU ratio (monitor / reference), RSS (MB) and first-figures times (s).
    ``baseline``: the monitor of that ``src/`` tree too, on a server from the same tree, in
    the same windows (keys that start with ``base_``)."""
    out: dict[str, float] = {}
    mons = {"mon": monitor_src, **({"base": baseline} if baseline else {})}
    for src in mons.values():  # compiled and in the page cache for all: only launches differ
        # Byte-compiled as an install leaves them (pip compiles on install): with
        # PYTHONDONTWRITEBYTECODE set, every launch would compile the tree's source again.
        for tree in (src or str(c.ROOT / "src"), str(c.ROOT / "bench")):
            subprocess.run([sys.executable, "-m", "compileall", "-q", tree], check=True)
        env = c.clean_env({"PYTHONPATH": src} if src else None)
        imports = "import metrics_tui.app, metrics_tui.cli, textual.app"
        subprocess.run([sys.executable, "-c", imports], env=env, cwd=c.ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp, tmux() as t, contextlib.ExitStack() as servers:
        procs: dict[str, psutil.Process] = {}
        for name, src in mons.items():
            port = c.free_port()
            server_src = src if name == "base" else None
            servers.enter_context(
                c.metrics_server(port, Path(tmp, f"{name}.db"), interval=1.0, src=server_src)
            )
            asyncio.run(seed(port))
            url = f"ws://{c.HOST}:{port}/ws/metrics"
            t0 = time.perf_counter()
            env = ["env", f"PYTHONPATH={src}"] if src else []
            procs[name] = t.start(name, [*env, sys.executable, "-m", "metrics_tui", "--url", url])
            key = "base_first_figures_s" if name == "base" else "first_figures_s"
            out[key] = wait_for(t, name, FIGURE, t0)
        t1 = time.perf_counter()
        ref = t.start("ref", [sys.executable, "-m", "bench.monitor", "--reference-app"])
        out["ref_first_paint_s"] = wait_for(t, "ref", REF_MARK, t1)
        time.sleep(settle)  # all past start-up
        ratios: dict[str, list[float]] = {name: [] for name in procs}
        rss: dict[str, list[int]] = {name: [] for name in [*procs, "ref"]}
        watched = {**procs, "ref": ref}
        for _ in range(windows):
            cpu0 = {name: c.cpu_seconds(p.pid) for name, p in watched.items()}
            end = time.perf_counter() + window
            while time.perf_counter() < end:
                for name, p in watched.items():
                    rss[name].append(c.rss_bytes(p.pid))
                time.sleep(min(1.0, max(0.0, end - time.perf_counter())))
            cpu = {name: c.cpu_seconds(p.pid) - cpu0[name] for name, p in watched.items()}
            for name in procs:
                ratios[name].append(cpu[name] / max(cpu["ref"], 0.01))
            out["mon_cpu_s"], out["ref_cpu_s"] = cpu["mon"], cpu["ref"]
            if baseline:
                out["base_cpu_s"] = cpu["base"]
        for name in procs:
            assert FIGURE in t.screen(name)
    out["cpu_ratio"] = c.median(ratios["mon"])
    out["rss_mb"] = max(rss["mon"]) / 2**20
    out["ref_rss_mb"] = max(rss["ref"]) / 2**20
    if baseline:
        out["base_cpu_ratio"] = c.median(ratios["base"])
        out["base_rss_mb"] = max(rss["base"]) / 2**20
    if verbose:
        print(
            f"CPU over {window:.0f} s: monitor {out['mon_cpu_s']:.2f} s, reference app"
            f" {out['ref_cpu_s']:.2f} s; ratio {out['cpu_ratio']:.2f} (target <= 2; windows: "
            + ", ".join(f"{r:.2f}" for r in ratios["mon"])
            + ")"
        )
        print(
            f"RSS: monitor {out['rss_mb']:.1f} MB max (target <= 60), reference"
            f" {out['ref_rss_mb']:.1f} MB"
        )
        print(
            f"first figures on screen {out['first_figures_s']:.2f} s after launch (target <= 1 s);"
            f" reference app's first paint {out['ref_first_paint_s']:.2f} s"
        )
        if baseline:
            print(
                f"baseline monitor, same windows: CPU {out['base_cpu_s']:.2f} s, ratio"
                f" {out['base_cpu_ratio']:.2f} (windows: "
                + ", ".join(f"{r:.2f}" for r in ratios["base"])
                + f"); RSS {out['base_rss_mb']:.1f} MB; first figures"
                f" {out['base_first_figures_s']:.2f} s"
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="three 60 s windows")
    ap.add_argument("--window", type=float, default=60.0, help="seconds per window (default 60)")
    ap.add_argument("--monitor-src", metavar="SRC", help="run the monitor from this src/ tree")
    c.add_baseline_arg(ap)
    ap.add_argument("--reference-app", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_app:
        reference_app()
        return
    c.print_header("the monitor vs a bare Textual app, 1 update/s")
    run(
        window=args.window,
        windows=3 if args.full else 1,
        monitor_src=args.monitor_src,
        baseline=args.baseline,
    )


if __name__ == "__main__":
    main()
