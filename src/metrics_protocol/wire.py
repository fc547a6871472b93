"""Messages, routes, error codes and limits shared by metrics-server and metrics-tui.

Standard library only, and nothing of either program: both import this package and neither
imports the other. The figures inside a snapshot are declared in ``figures.py``; the functions
here encode and decode them through its :data:`~metrics_protocol.figures.SCHEMA`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

from .figures import SCHEMA, ActiveUsers, Content, Metrics, Revenue, Transactions
from .schema import CENT, ProtocolError, format_timestamp, parse_timestamp

__all__ = [
    "CENT",
    "CHANNELS",
    "EPOCH_MAX",
    "HEALTH_PATH",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "REST_METRICS_PATH",
    "WS_INGEST_PATH",
    "WS_METRICS_PATH",
    "ActiveUsers",
    "Content",
    "Kind",
    "Metrics",
    "ProtocolError",
    "Revenue",
    "Transactions",
    "check_epoch",
    "decode_data",
    "encode",
    "encode_data",
    "encode_history",
    "encode_metrics",
    "error_message",
    "format_timestamp",
    "loads",
    "metrics_to_dict",
    "parse_timestamp",
    "position",
]

WS_METRICS_PATH = "/ws/metrics"
WS_INGEST_PATH = "/ws/ingest"
REST_METRICS_PATH = "/api/v1/analytics/realtime-metrics"
HEALTH_PATH = "/healthz"

#: The groups of a metrics snapshot, in wire order; also the channel names of ``subscribe``.
CHANNELS: tuple[str, ...] = SCHEMA.groups
#: Events per ingest batch.
MAX_BATCH = 1000
#: Bytes per ingest message (the default of --max-batch-size). The worst case is 7,362,851
#: bytes: 1,000 transactions with an id, userId and contentId of 200 characters each outside
#: the BMP, which json.dumps (ensure_ascii) writes as 12-byte surrogate pairs (7,200 bytes an
#: event), plus names, status, amount and ts (about 150). 8 MiB leaves 1 MiB for the batch's own
#: fields and longer spellings.
MAX_BATCH_BYTES = 8 * 1024 * 1024

#: Why a metrics message was sent: ``interval`` snapshots are the periodic samples that charts
#: plot (and that ``history`` replays); ``change`` snapshots refresh figures between them.
Kind = Literal["interval", "change"]

# Error codes carried in {"type":"error","error":{"code":...}}.
ERR_INVALID_JSON = "invalid_json"
ERR_INVALID_MESSAGE = "invalid_message"
ERR_UNKNOWN_TYPE = "unknown_type"
ERR_UNKNOWN_CHANNEL = "unknown_channel"
ERR_INVALID_EVENT = "invalid_event"
ERR_INVALID_BATCH = "invalid_batch"
ERR_AMOUNT_TOO_LARGE = "amount_too_large"
ERR_STORE_UNAVAILABLE = "store_unavailable"
ERR_NOT_FOUND = "not_found"
ERR_METHOD_NOT_ALLOWED = "method_not_allowed"
ERR_UNAUTHORIZED = "unauthorized"
ERR_TOO_MANY_CLIENTS = "too_many_clients"
ERR_RATE_LIMITED = "rate_limited"
ERR_SHUTTING_DOWN = "shutting_down"
ERR_KEY_REUSED = "key_reused"


# --------------------------------------------------------------------------- encoding
# Snapshots are written from precompiled templates rather than json.dumps: the standard encoder
# cannot write "125000.50" (it would write a float's repr), and this runs once per broadcast.

#: ``encode_data(m, channels=CHANNELS)``: the ``data`` object of a metrics message, as JSON.
encode_data = SCHEMA.encode_data
#: ``decode_data(data)``: a ``data`` object (metrics, history or REST) as a :class:`Metrics`.
decode_data = SCHEMA.decode_data


#: The longest epoch, and its alphabet: written into messages as is, without escaping.
EPOCH_MAX = 64
_EPOCH = re.compile(rf"[A-Za-z0-9._:-]{{1,{EPOCH_MAX}}}")


def check_epoch(epoch: str) -> str:
    """An epoch as the server writes it (ValueError otherwise): 1 to 64 characters of
    ``A-Z a-z 0-9 . _ : -``, so that it needs no escaping in JSON."""
    if not isinstance(epoch, str) or not _EPOCH.fullmatch(epoch):
        raise ValueError(f"not an epoch: {epoch!r}")
    return epoch


def _position(epoch: str | None, seq: int | None) -> str:
    # Plain formatting: the epoch's alphabet needs no escaping (check_epoch), and this runs once
    # per broadcast and channel selection.
    return "" if seq is None else f',"epoch":"{epoch}","seq":{seq:d}'


def encode_metrics(
    m: Metrics,
    kind: Kind = "change",
    channels: Iterable[str] = CHANNELS,
    interval: float | None = None,
    *,
    epoch: str | None = None,
    seq: int | None = None,
) -> str:
    """``interval`` is given on the REST answer only: a poller gets no history to learn it from.
    ``epoch`` and ``seq`` place the snapshot in the server's sequence (docs/protocol.md)."""
    every = "" if interval is None else f',"interval":{interval:g}'
    return (
        f'{{"type":"metrics","kind":"{kind}"{_position(epoch, seq)}{every},'
        f'"data":{encode_data(m, channels)}}}'
    )


def encode_history(
    snapshots: Sequence[Metrics],
    channels: Iterable[str] = CHANNELS,
    interval: float | None = None,
    *,
    epoch: str | None = None,
    seq: int | None = None,
) -> str:
    """``interval`` (seconds between samples) lets a client label and age its charts without
    guessing from the samples' spacing, which a restart makes uneven. ``epoch`` and ``seq``:
    the snapshot that the history leads up to (the greeting's ``metrics`` carries the same)."""
    channels = tuple(channels)
    body = ",".join(encode_data(m, channels) for m in snapshots)
    every = "" if interval is None else f',"interval":{interval:g}'
    return f'{{"type":"history"{_position(epoch, seq)}{every},"data":[{body}]}}'


def position(message: Any) -> tuple[str, int] | None:
    """``(epoch, seq)`` of a decoded ``metrics`` or ``history`` message, or None when it has
    none (an older server). Raises ProtocolError when they are there but malformed.

    A client that holds ``(e, n)`` and then gets ``(e, n + 1)`` missed nothing; ``(e, m)``
    with ``m > n + 1`` is a gap, and another epoch means the sequence restarted: either way,
    ask again (``{"type":"resync"}``). ``(e, m)`` with ``m <= n`` repeats a snapshot held."""
    if not isinstance(message, dict) or ("seq" not in message and "epoch" not in message):
        return None
    epoch, seq = message.get("epoch"), message.get("seq")
    if not isinstance(epoch, str) or not _EPOCH.fullmatch(epoch):
        raise ProtocolError("'epoch' must be a string of 1 to 64 characters [A-Za-z0-9._:-]")
    if type(seq) is not int or seq < 0:
        raise ProtocolError("'seq' must be a non-negative integer")
    return epoch, seq


def encode(message: dict[str, Any]) -> str:
    """Any other message (ping, pong, ack, error, subscribed, events)."""
    return json.dumps(message, separators=(",", ":"), default=_default)


def _default(o: object) -> Any:
    # loads() reads numbers as Decimal; echo them back as numbers (e.g. a batch id of 1.5).
    if isinstance(o, Decimal):
        # Exponents are bounded first: int(Decimal("1e999999999")) would build a billion-digit
        # integer. A number beyond a double's range comes back as its text.
        if o.adjusted() <= 300 and o == o.to_integral_value() and "." not in str(o):
            return int(o)
        f = float(o)
        return f if math.isfinite(f) else str(o)
    raise TypeError(f"cannot encode {type(o).__name__}")


def error_message(code: str, message: str, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    msg: dict[str, Any] = {"type": "error"}
    if "id" in extra:
        msg["id"] = extra.pop("id")
    err.update(extra)
    msg["error"] = err
    return msg


# --------------------------------------------------------------------------- decoding


def loads(text: str | bytes) -> Any:
    """Parse JSON with exact decimals. Raises ProtocolError on anything that is not JSON."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def metrics_to_dict(m: Metrics, channels: Iterable[str] = CHANNELS) -> dict[str, Any]:
    """The seed-shaped ``data`` object as Python values (Decimals for money)."""
    return loads(encode_data(m, channels))
