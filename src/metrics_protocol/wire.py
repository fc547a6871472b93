"""Messages, routes, error codes and limits shared by metrics-server and metrics-tui.

Standard library only, and nothing of either program: both import this package and neither
imports the other. The figures inside a snapshot are declared in ``figures.py``; the functions
here encode and decode them through its :data:`~metrics_protocol.figures.SCHEMA`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

from .figures import SCHEMA, ActiveUsers, Content, Metrics, Revenue, Transactions
from .schema import CENT, ProtocolError, format_timestamp, parse_timestamp

__all__ = [
    "CENT",
    "CHANNELS",
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


def encode_metrics(
    m: Metrics,
    kind: Kind = "change",
    channels: Iterable[str] = CHANNELS,
    interval: float | None = None,
) -> str:
    """``interval`` is given on the REST answer only: a poller gets no history to learn it from."""
    every = "" if interval is None else f',"interval":{interval:g}'
    return f'{{"type":"metrics","kind":"{kind}"{every},"data":{encode_data(m, channels)}}}'


def encode_history(
    snapshots: Sequence[Metrics],
    channels: Iterable[str] = CHANNELS,
    interval: float | None = None,
) -> str:
    """``interval`` (seconds between samples) lets a client label and age its charts without
    guessing from the samples' spacing, which a restart makes uneven."""
    channels = tuple(channels)
    body = ",".join(encode_data(m, channels) for m in snapshots)
    every = "" if interval is None else f',"interval":{interval:g}'
    return f'{{"type":"history"{every},"data":[{body}]}}'


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
