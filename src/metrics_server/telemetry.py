"""Prometheus ``/metrics``: plain counters in the hot paths, metric families at scrape time.

The hub and the service count with plain ints, ``Counter`` dicts and a lock-free `Histogram`
(one writer each: the event loop, or the store's one worker thread for ``commit_seconds``), so
keeping them costs an addition or two per broadcast or batch, never a labelled ``.inc()`` per
subscriber per message: a broadcast adds ``len(frame) x recipients`` once. `Exposition` turns
them into Prometheus metric families when ``/metrics`` is scraped, through a
``CollectorRegistry`` of its own (not the global one), so several servers in one process (tests,
the demo) do not collide. ``prometheus_client`` is imported at the first scrape (about 10 ms),
so a server nobody scrapes does not pay for it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "metrics_server_"


def _bounds(text: str) -> tuple[float, ...]:
    return tuple(float(b) for b in text.split())


#: Bucket bounds in seconds. A broadcast costs ~30 us per subscriber (docs/PERFORMANCE.md,
#: fan-out), so 1,000 subscribers take ~30 ms and 10,000 ~300 ms.
BROADCAST_BUCKETS = _bounds(
    "0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5"
)
#: A commit is one fsync (synchronous=FULL): about a millisecond on an SSD, tens on a disk.
COMMIT_BUCKETS = _bounds("0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10")
#: Changes are pushed at most every --push-interval (0.25 s by default): lags spread up to it.
PUSH_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Bucket counts and a sum, without a lock: each histogram has a single writer."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations <= le) pairs, ending with +Inf, as Prometheus wants."""
        out, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


def message_type(text: str) -> str:
    """The ``type`` of a message the server wrote: every one starts with ``{"type":"``
    (the encoders put it first), so this is a slice, not a parse."""
    if text.startswith('{"type":"'):
        return text[9 : text.find('"', 9)]
    return "other"


@dataclass(slots=True)
class Telemetry:
    """What the server counts while it runs; read by `Exposition` at scrape time."""

    #: Stored events by their class (named at scrape time: see ``event_names``).
    events: Counter[type] = field(default_factory=Counter)
    event_names: Mapping[type, str] = field(default_factory=dict)
    #: Messages on /ws/ingest other than pings, by (result, reason): ("accepted", "") for a
    #: stored batch, ("accepted", "duplicate") for a repeated idempotency key (acknowledged
    #: again, nothing stored), ("refused", ERROR_CODE) for each refusal.
    batches: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Messages handed to subscribers' and producers' connections, by type, and their bytes
    #: (the messages are ASCII JSON, so characters are bytes; frame headers not counted).
    sent: Counter[str] = field(default_factory=Counter)
    sent_bytes: int = 0
    store_errors: int = 0
    producers: int = 0
    #: Connections closed, by (route, close code).
    closed: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Plain HTTP answers (REST, /healthz, /metrics, refused handshakes) by (route, status).
    http: Counter[tuple[str, int]] = field(default_factory=Counter)
    broadcast_seconds: Histogram = field(default_factory=lambda: Histogram(BROADCAST_BUCKETS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS))
    push_lag_seconds: Histogram = field(default_factory=lambda: Histogram(PUSH_LAG_BUCKETS))

    def count_sent(self, text: str, recipients: int = 1) -> None:
        self.sent[message_type(text)] += recipients
        self.sent_bytes += len(text) * recipients


@dataclass(slots=True)
class Gauges:
    """Values read from their owners at scrape time."""

    subscribers: Callable[[], int]
    skipped: Callable[[], int]
    #: The seq of the latest snapshot published (or relayed) here.
    seq: Callable[[], int] = lambda: 0
    #: With a broker: subscriptions re-established after a loss (None: no broker, no series).
    broker_reconnects: Callable[[], int] | None = None


#: The counters with labels, in the order they are shown: name -> (label names, help text).
_LABELLED: dict[str, tuple[list[str], str]] = {
    "events_ingested": (["type"], "Events stored, by type."),
    "batches": (
        ["result", "reason"],
        "Messages on /ws/ingest (pings aside) by result; reason: the error code of a refusal,"
        " 'duplicate' for a repeated idempotency key (acknowledged, not stored).",
    ),
    "messages_sent": (
        ["type"],
        "Messages handed to connections, by type (a broadcast counts one per recipient).",
    ),
    "connections_closed": (
        ["route", "code"],
        "WebSocket connections closed, by route and close code (1008: a rate limit, 1009: a"
        " message too big, 1011: no pong in time).",
    ),
    "http_responses": (
        ["route", "status"],
        "Plain HTTP answers (REST, /healthz, /metrics, refused handshakes), by route and status.",
    ),
}


class Exposition:
    """The ``/metrics`` answer for one server: ``render(accept) -> (body, content_type)``."""

    def __init__(self, telemetry: Telemetry, gauges: Gauges, *, version: str, store: str) -> None:
        self.telemetry = telemetry
        self.gauges = gauges
        self.info = {"version": version, "store": store}
        self._registry: Any = None

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        from prometheus_client import exposition

        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(self._registry or self._build()), content_type

    def _build(self) -> Any:
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        ProcessCollector(registry=registry)  # CPU, RSS, open fds of this process
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._registry = registry
        return registry

    def families(self) -> Iterator[Any]:
        """The server's own metric families, from the counters as they are now."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        t, n = self.telemetry, PREFIX

        def counts(name: str, items: Mapping[Any, int]) -> Any:
            """One of the ``_LABELLED`` counters: a sample per key (a label value, or a tuple
            of them), sorted."""
            labels, text = _LABELLED[name]
            family = CounterMetricFamily(n + name, text, labels=labels)
            for key, count in sorted(items.items()):
                family.add_metric([str(v) for v in key] if isinstance(key, tuple) else [key], count)
            return family

        info = GaugeMetricFamily(
            n + "info", "Version and store of this server (always 1).", labels=list(self.info)
        )
        info.add_metric(list(self.info.values()), 1)
        yield info

        by_name = Counter({name: 0 for name in t.event_names.values()})
        for cls, count in list(t.events.items()):
            by_name[t.event_names.get(cls, cls.__name__)] += count
        yield counts("events_ingested", by_name)
        yield counts("batches", {("accepted", ""): 0, **t.batches})  # accepted from the start

        yield GaugeMetricFamily(
            n + "subscribers", "Open /ws/metrics connections.", value=self.gauges.subscribers()
        )
        yield GaugeMetricFamily(n + "producers", "Open /ws/ingest connections.", value=t.producers)

        yield counts("messages_sent", t.sent)
        yield CounterMetricFamily(
            n + "bytes_sent",
            "Bytes of the messages handed to connections (payload, without frame headers).",
            value=t.sent_bytes,
        )
        yield CounterMetricFamily(
            n + "subscribers_skipped",
            "Messages not sent to a subscriber because more than --max-buffer was queued for it.",
            value=self.gauges.skipped(),
        )
        yield CounterMetricFamily(
            n + "store_errors",
            "Store operations that failed (a commit, a sample).",
            value=t.store_errors,
        )

        yield counts("connections_closed", t.closed)
        yield counts("http_responses", t.http)

        for name, hist, text in (
            (
                "broadcast_seconds",
                t.broadcast_seconds,
                "Time to hand one message to every subscriber (encoding included).",
            ),
            (
                "commit_seconds",
                t.commit_seconds,
                "Time of one store commit (a group of batches, one fsync).",
            ),
            (
                "push_lag_seconds",
                t.push_lag_seconds,
                "From a commit to the broadcast of the first snapshot that holds it.",
            ),
        ):
            family = HistogramMetricFamily(n + name, text)
            family.add_metric([], hist.cumulative(), sum_value=hist.sum)
            yield family

        # Scale-out (cluster.py, broker.py): read from the service and the broker adapter.
        yield GaugeMetricFamily(
            n + "seq",
            "The seq of the latest snapshot published or relayed here (it restarts with each"
            " epoch: a restart, or another server taking over computing the snapshots).",
            value=self.gauges.seq(),
        )
        if self.gauges.broker_reconnects is not None:
            yield CounterMetricFamily(
                n + "broker_reconnects",
                "Subscriptions to the broker (Redis) re-established after a loss.",
                value=self.gauges.broker_reconnects(),
            )


class _Collector:
    """A custom collector (``collect()`` is all ``CollectorRegistry`` needs)."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition

    def collect(self) -> Iterator[Any]:
        return self.exposition.families()
