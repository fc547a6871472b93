"""The monitor through many server restarts: it never crashes, is Live again after each, and
never claims Live while the server is down.

``metrics-tui`` runs in an 80x24 tmux pane (a private tmux server, so no session of the user's is
touched) watching a real metrics-server, which is stopped with SIGTERM and started again on the
same port and database ``--restarts`` times. After each stop the pane must show Reconnecting or
Connecting (not Live) and the monitor's process must be alive; after each start it must show
Live again within ``--live-within`` seconds. Reported: restarts survived, time from the server's
return to Live (median, max), the words seen during downtime.

    python -m bench.restarts                  # 50 restarts
    python -m bench.restarts --restarts 5     # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import _common as c

LIVE = "Live ●"
DOWN_WORDS = ("Reconnecting", "Connecting")


def start_server(port: int, db: Path) -> c.ServerProcess:
    flags = ["--port", str(port), "--db", str(db), "--interval", "1", "--demo"]
    return c.ServerProcess(port, *flags).wait_ready()


class Pane:
    """One tmux pane on a private tmux server (``-L``), 80x24, kept after its process exits."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"metrics-restarts-{os.getpid()}"
        self._tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", *command)
        self._tmux("set-option", "-t", "tui", "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        if result.returncode != 0:
            raise RuntimeError(f"tmux {args[0]}: {result.stderr.strip()}")
        return result.stdout

    def text(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "tui")

    def alive(self) -> bool:
        return self._tmux("list-panes", "-t", "tui", "-F", "#{pane_dead}").strip() == "0"

    def wait_for(self, pred: object, within: float) -> tuple[bool, str]:
        """Poll the pane until ``pred(text)`` or the deadline; (met, last text)."""
        deadline = time.monotonic() + within
        while True:
            text = self.text()
            if pred(text):  # type: ignore[operator]
                return True, text
            if time.monotonic() > deadline or not self.alive():
                return False, text
            time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._tmux("kill-server")


def monitor_command(port: int) -> list[str]:
    exe = Path(sys.executable).parent / "metrics-tui"
    prog = [str(exe)] if exe.exists() else [sys.executable, "-m", "metrics_tui"]
    return [*prog, "--url", f"ws://{c.HOST}:{port}/ws/metrics", "--theme", "ansi-dark"]


def run(restarts: int, live_within: float, down_within: float) -> int:
    if shutil.which("tmux") is None:
        print("needs tmux")
        return 2
    port = c.free_port()
    to_live: list[float] = []
    seen_down: Counter[str] = Counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "m.db"
        server = start_server(port, db)
        pane = Pane(monitor_command(port))
        try:
            ok, text = pane.wait_for(lambda t: LIVE in t, live_within)
            if not ok:
                print("the monitor never showed Live:\n" + text)
                return 1
            for n in range(1, restarts + 1):
                code = server.stop()
                server.close()
                if code != 0:
                    failures.append(f"restart {n}: server exit code {code}")
                # Down: the status must say so (and no longer Live) within the deadline.
                ok, text = pane.wait_for(
                    lambda t: LIVE not in t and any(w in t for w in DOWN_WORDS), down_within
                )
                if not pane.alive():
                    failures.append(f"restart {n}: the monitor exited\n{text}")
                    break
                if not ok:
                    failures.append(f"restart {n}: still claims Live with the server down")
                else:
                    seen_down.update(w for w in DOWN_WORDS if w in text)
                    # ... and it keeps saying so while the server stays down.
                    if LIVE in pane.text():
                        failures.append(f"restart {n}: Live shown during downtime")
                server = start_server(port, db)
                back = time.monotonic()
                ok, text = pane.wait_for(lambda t: LIVE in t, live_within)
                if not ok:
                    failures.append(f"restart {n}: not Live {live_within:g} s after the restart")
                    if not pane.alive():
                        break
                    continue
                to_live.append(time.monotonic() - back)
                print(f"restart {n}/{restarts}: Live again after {to_live[-1]:.2f} s", flush=True)
            alive = pane.alive()
        finally:
            pane.close()
            server.stop()
            server.close()
    print(f"# restarts: {restarts} server restarts with metrics-tui attached (80x24 tmux pane)")
    if to_live:
        print(
            f"Live again after a restart: median {statistics.median(to_live):.2f} s, "
            f"max {max(to_live):.2f} s ({len(to_live)}/{restarts} within {live_within:g} s)"
        )
    print(f"status during downtime: {dict(seen_down)}; monitor alive at the end: {alive}")
    print(f"failures: {len(failures)}")
    for line in failures[:10]:
        print(f"  {line}")
    return 0 if not failures and alive and len(to_live) == restarts else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=50)
    parser.add_argument("--live-within", type=float, default=45.0, help="seconds")
    parser.add_argument("--down-within", type=float, default=10.0, help="seconds")
    args = parser.parse_args()
    sys.exit(run(args.restarts, args.live_within, args.down_within))
