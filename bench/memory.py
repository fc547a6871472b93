"""Memory per idle subscriber: RSS growth per connection, with and without permessage-deflate.

Three servers side by side in the same run, each in its own process: metrics-server (which uses
``compression=None``), and the bare websockets reference server with ``compression=None`` and
with the default ``deflate``. Each gets the same number of idle raw subscribers (asking for
deflate where the server offers it, as browsers and websockets clients do); each server sends a
message on connect, so deflate's buffers are really allocated. The figure is (RSS after - RSS
before) / connections, target <= 20 KB; wire bytes per message for both settings come from
``message_size``.

    python -m bench.memory            # 1,000 connections per server
    python -m bench.memory --full     # 5,000
    python -m bench.memory --baseline SRC   # also the server from SRC (an older src/), same run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from bench import _common as c
from bench import message_size

IDLE = 3600.0  # the servers' update interval: nothing is pushed while measuring


def run(
    n: int = 1000, *, settle: float = 2.0, baseline: str | None = None, verbose: bool = True
) -> dict[str, float]:
    """Returns KB per connection for each server, and wire bytes per message for both settings.
    ``baseline``: a fourth server, the metrics-server from that ``src/`` tree."""
    c.raise_nofile()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        payload = Path(tmp, "payload.json")
        payload.write_text(c.sample_payload())
        servers = {}
        for name, deflate in (
            ("metrics-server", False),
            ("ref-none", False),
            ("ref-deflate", True),
            *((("baseline", False),) if baseline else ()),
        ):
            port = c.free_port()
            if name in ("metrics-server", "baseline"):
                src = baseline if name == "baseline" else None
                proc = stack.enter_context(
                    c.metrics_server(port, Path(tmp, f"{name}.db"), interval=IDLE, src=src)
                )
            else:
                proc = stack.enter_context(
                    c.ref_server(port, payload, interval=IDLE, deflate=deflate)
                )
            servers[name] = (port, proc, deflate)

        async def connect_all() -> None:
            # Warm each server with a few connections first (first-use allocations are not
            # per-connection), then measure over n more.
            fleets = []
            for port, _proc, deflate in servers.values():
                st = c.Stats()
                fleets += await c.connect_many(port, 20, st, deflate=deflate)
            await asyncio.sleep(settle / 2)
            before = {name: c.rss_bytes(s[1].pid) for name, s in servers.items()}
            for name, (port, _proc, deflate) in servers.items():
                st = c.Stats()
                fleets += await c.connect_many(port, n, st, deflate=deflate)
                assert st.connected == n, (name, st.connected)
            await asyncio.sleep(settle)
            for name, s in servers.items():
                grew = c.rss_bytes(s[1].pid) - before[name]
                out[f"{name}_kb"] = grew / n / 1024
            c.close_all(fleets)
            await asyncio.sleep(0.2)

        asyncio.run(connect_all())
    msgs = message_size.stream(200)
    plain = message_size.wire_bytes(msgs, deflate=False)
    comp = message_size.wire_bytes(msgs, deflate=True)
    out["wire_plain"] = sum(plain) / len(plain)
    out["wire_deflate"] = sum(comp[1:]) / (len(comp) - 1)
    if verbose:
        print(f"{n} idle subscribers per server; RSS growth per connection:")
        for name in servers:
            print(f"  {name:<15} {out[f'{name}_kb']:6.1f} KB")
        print(
            f"  metrics-server / ref-none  {out['metrics-server_kb'] / out['ref-none_kb']:.2f}"
            f"   ref-deflate / ref-none  {out['ref-deflate_kb'] / out['ref-none_kb']:.2f}"
            + (
                f"   metrics-server / baseline {out['metrics-server_kb'] / out['baseline_kb']:.2f}"
                if baseline
                else ""
            )
        )
        print("  target: metrics-server <= 20 KB")
        print(
            f"bytes on the wire per metrics message: none {out['wire_plain']:.0f},"
            f" deflate {out['wire_deflate']:.0f}"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="5,000 connections per server")
    c.add_baseline_arg(ap)
    args = ap.parse_args()
    c.print_header("memory per idle subscriber connection")
    t0 = time.perf_counter()
    run(5000 if args.full else 1000, baseline=args.baseline)
    print(f"# took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
