"""Fan-out: server CPU per (subscriber x update), metrics-server vs a bare ``broadcast()``.

Both servers run at once, each in its own process, at the same update rate, with the same
number of raw subscribers (each fleet in its own client process), and with the same payload: a
real metrics message. CPU seconds of each server over the same window, divided by the text frames
its subscribers received in that window, give the cost per subscriber per update; the figure is
their ratio (target <= 1.2), pooled over several windows (each window's ratio is printed too:
the spread shows how noisy the machine was).

    python -m bench.fanout            # 1,000 and 5,000 subscribers, 2 updates/s, 5 x 8 s windows
    python -m bench.fanout --full     # 7 x 20 s windows
    python -m bench.fanout --baseline DIR   # also a server from DIR (an older src/), same run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench import _common as c


def _fleet(port: int, conn: Connection) -> None:
    """Client process: on ("add", n) open n more subscribers; on ("count",) report frames."""
    c.raise_nofile()

    async def main() -> None:
        stats = c.Stats()
        clients: list[c.RawClient] = []
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "add":
                clients += await c.connect_many(port, cmd[1], stats)
                conn.send(stats.connected)
            elif cmd[0] == "count":
                conn.send((loop.time(), stats.frames, stats.connected - stats.closed))
            else:
                c.close_all(clients)
                conn.send(None)
                return

    asyncio.run(main())


def _ask(conn: Connection, *cmd: object) -> object:
    conn.send(cmd)
    return conn.recv()


def run(
    sizes: tuple[int, ...] = (1000, 5000),
    *,
    interval: float = 0.5,
    window: float = 8.0,
    windows: int = 5,
    settle: float = 1.0,
    baseline: str | None = None,
    verbose: bool = True,
) -> list[dict[str, float]]:
    """Returns one row per size: CPU microseconds per subscriber-update for both, and the ratio.

    ``baseline``: a third server, run from that ``src/`` tree at the same time with its own
    fleet, so before and after share the windows (``base_us``, ``base_ratio``)."""
    c.raise_nofile()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp, "payload.json")
        payload.write_text(c.sample_payload())
        p_srv, p_ref, p_base = c.free_port(), c.free_port(), c.free_port()
        ctx = mp.get_context("fork")
        with contextlib.ExitStack() as stack:
            srv = stack.enter_context(c.metrics_server(p_srv, Path(tmp, "m.db"), interval=interval))
            ref = stack.enter_context(c.ref_server(p_ref, payload, interval=interval))
            servers = {"srv": (srv, p_srv), "ref": (ref, p_ref)}
            if baseline:
                base_db = Path(tmp, "b.db")
                servers["base"] = (
                    stack.enter_context(
                        c.metrics_server(p_base, base_db, interval=interval, src=baseline)
                    ),
                    p_base,
                )
            names = tuple(servers)
            pipes = {}
            procs = []
            for name, (_, port) in servers.items():
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_fleet, args=(port, child), daemon=True)
                proc.start()
                pipes[name], procs = parent, [*procs, proc]
            try:
                have = 0
                for n in sizes:
                    for conn in pipes.values():
                        _ask(conn, "add", n - have)
                    have = n
                    time.sleep(3 * interval + settle)  # let connects settle, skip their CPU
                    ratios, base_ratios = [], []
                    per: dict[str, list[float]] = {k: [] for k in names}
                    tot = {k: [0.0, 0] for k in names}
                    for _ in range(windows):
                        cpu0 = {k: c.cpu_seconds(p.pid) for k, (p, _) in servers.items()}
                        cnt0 = {k: _ask(v, "count") for k, v in pipes.items()}
                        time.sleep(window)
                        cpu1 = {k: c.cpu_seconds(p.pid) for k, (p, _) in servers.items()}
                        cnt1 = {k: _ask(v, "count") for k, v in pipes.items()}
                        cost = {}
                        for k in names:
                            frames = cnt1[k][1] - cnt0[k][1]  # type: ignore[index]
                            cost[k] = (cpu1[k] - cpu0[k]) / max(frames, 1) * 1e6
                            tot[k][0] += cpu1[k] - cpu0[k]
                            tot[k][1] += frames
                            per[k].append(cost[k])
                        ratios.append(cost["srv"] / max(cost["ref"], 1e-9))
                        if baseline:
                            base_ratios.append(cost["srv"] / max(cost["base"], 1e-9))
                    row = {
                        "subscribers": n,
                        "open_srv": cnt1["srv"][2],  # type: ignore[index]
                        "open_ref": cnt1["ref"][2],  # type: ignore[index]
                        "srv_us": c.median(per["srv"]),
                        "ref_us": c.median(per["ref"]),
                        "ratio": (tot["srv"][0] / max(tot["srv"][1], 1))
                        / max(tot["ref"][0] / max(tot["ref"][1], 1), 1e-9),
                        "frames_srv": tot["srv"][1],  # text frames received, all windows
                        "frames_ref": tot["ref"][1],
                        "ratio_median": c.median(ratios),
                        "ratio_max": max(ratios),
                    }
                    if baseline:
                        row["base_us"] = c.median(per["base"])
                        row["open_base"] = cnt1["base"][2]  # type: ignore[index]
                        # after / before, pooled like the ratio to broadcast()
                        row["base_ratio"] = (tot["srv"][0] / max(tot["srv"][1], 1)) / max(
                            tot["base"][0] / max(tot["base"][1], 1), 1e-9
                        )
                    rows.append(row)
                    if verbose and baseline:
                        print(
                            f"{n:>6} subscribers: baseline {row['base_us']:.1f} us per"
                            f" subscriber-update; metrics-server / baseline {row['base_ratio']:.2f}"
                            " over all windows (each: "
                            + ", ".join(f"{r:.2f}" for r in base_ratios)
                            + f"); open {row['open_base']}",
                            flush=True,
                        )
                    if verbose:
                        print(
                            f"{n:>6} subscribers: metrics-server {row['srv_us']:.1f} us,"
                            f" broadcast() {row['ref_us']:.1f} us per subscriber-update;"
                            f" ratio {row['ratio']:.2f} over all windows (each: "
                            + ", ".join(f"{r:.2f}" for r in ratios)
                            + f") target <= 1.2; open {row['open_srv']}/{row['open_ref']}",
                            flush=True,
                        )
            finally:
                for conn in pipes.values():
                    _ask(conn, "stop")
                for proc in procs:
                    proc.join(10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="longer windows")
    ap.add_argument("--baseline", metavar="SRC", help="also run the server from this src/ tree")
    args = ap.parse_args()
    c.print_header("fan-out: server CPU per subscriber-update vs bare websockets.broadcast()")
    run(
        window=20.0 if args.full else 8.0,
        windows=7 if args.full else 5,
        baseline=args.baseline,
    )


if __name__ == "__main__":
    main()
