"""Bytes per metrics message: the real encoder on large, realistic figures, and on the wire.

The seed's message was about 2 KB; the target is <= 600 bytes. The wire figure adds the frame
header, and is given both without compression (what the server uses) and with websockets'
default permessage-deflate (context takeover, 12-bit window, memLevel 5), over a stream of
consecutive snapshots like a live feed's, since deflate's gain depends on what came before.

    python -m bench.message_size [--full]      # --full: a longer stream of snapshots
    python -m bench.message_size --baseline SRC   # also the encoder of SRC, same run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from bench import _common as c

p = c.wire()  # this tree's encoder, or an older tree's under --baseline

SEED_BYTES = 2048  # "about 2 KB", as the seed's message was quoted
#: Where a server's sequence stands after a busy day (4 publications a second for 24 h): the
#: place a live message carries since the sequence numbers came in.
EPOCH, SEQ = "0123456789ab", 345_600


def as_sent(m: Any, kind: str) -> str:
    """The message as a server sends it: with its place in the sequence, where this tree's
    encoder writes one (an older tree's has none)."""
    try:
        return p.encode_metrics(m, kind, epoch=EPOCH, seq=SEQ)
    except TypeError:
        return p.encode_metrics(m, kind)


def stream(n: int) -> list[str]:
    """``n`` consecutive metrics messages whose figures move like a busy feed's."""
    m = c.big_metrics()
    out = []
    for i in range(n):
        assert m.revenue and m.active_users and m.transactions and m.content
        step = Decimal(i * 1237 % 9973) / 100
        m = dataclasses.replace(
            m,
            timestamp=m.timestamp + timedelta(seconds=1, milliseconds=i * 7 % 1000),
            revenue=p.Revenue(*(v + step for v in dataclasses.astuple(m.revenue))),
            active_users=p.ActiveUsers(
                m.active_users.current + i % 17, m.active_users.today + i, m.active_users.peak24h
            ),
            transactions=p.Transactions(
                m.transactions.total + 3 * i,
                m.transactions.pending + i % 5,
                m.transactions.completed + 2 * i,
                m.transactions.failed + i % 3,
            ),
            content=p.Content(
                m.content.total_views + 41 * i,
                m.content.total_purchases + 2 * i,
                m.content.conversion_rate,
            ),
        )
        out.append(as_sent(m, "interval" if i % 5 == 0 else "change"))
    return out


def wire_bytes(messages: list[str], deflate: bool) -> list[int]:
    """Bytes each message takes on the wire as one server->client frame."""
    ext = [PerMessageDeflate(False, False, 12, 12, {"memLevel": 5})] if deflate else []
    return [
        len(Frame(Opcode.TEXT, m.encode()).serialize(mask=False, extensions=ext)) for m in messages
    ]


def run(n: int = 200, verbose: bool = True) -> dict[str, float]:
    msg = p.encode_metrics(c.big_metrics(), "interval")
    sent = as_sent(c.big_metrics(), "interval")
    msgs = stream(n)
    plain = wire_bytes(msgs, deflate=False)
    comp = wire_bytes(msgs, deflate=True)
    row = {
        "message_bytes": len(msg.encode()),
        "sent_bytes": len(sent.encode()),
        "seed_bytes": SEED_BYTES,
        "wire_plain_mean": sum(plain) / len(plain),
        "wire_deflate_first": comp[0],
        "wire_deflate_mean": sum(comp[1:]) / max(len(comp) - 1, 1),
        "history_bytes": len(p.encode_history([c.big_metrics()] * 20).encode()),
    }
    if verbose:
        print(
            f"metrics message, large figures: {row['message_bytes']} bytes"
            f" (target <= 600; seed ~{SEED_BYTES}, ratio {row['message_bytes'] / SEED_BYTES:.2f})"
        )
        print(f"as a server sends it, with epoch and seq: {row['sent_bytes']} bytes")
        print(f"on the wire, compression=None: {row['wire_plain_mean']:.0f} bytes per message")
        print(
            f"on the wire, permessage-deflate: first {row['wire_deflate_first']} bytes, then"
            f" {row['wire_deflate_mean']:.0f} bytes per message (mean over {n - 1}),"
            f" deflate/plain {row['wire_deflate_mean'] / row['wire_plain_mean']:.2f}"
        )
        print(f"history message (20 snapshots): {row['history_bytes']} bytes")
        print(sent)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="a longer stream")
    c.add_baseline_arg(ap)
    ap.add_argument("--tree-side", type=int, help=argparse.SUPPRESS)  # what --baseline runs
    args = ap.parse_args()
    if args.tree_side:
        print(json.dumps(run(args.tree_side, verbose=False)))
        return
    c.print_header("bytes per metrics message")
    n = 2000 if args.full else 200
    row = run(n)
    if args.baseline:
        base = c.run_in_tree(args.baseline, "bench.message_size", "--tree-side", str(n))
        print(
            f"baseline: metrics message {base['message_bytes']} bytes (now / baseline"
            f" {row['message_bytes'] / base['message_bytes']:.2f}); as sent"
            f" {base.get('sent_bytes', base['message_bytes'])}; on the wire"
            f" {base['wire_plain_mean']:.0f}, deflate {base['wire_deflate_mean']:.0f};"
            f" history {base['history_bytes']} bytes"
        )


if __name__ == "__main__":
    main()
