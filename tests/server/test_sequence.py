"""seq and epoch on one server: every snapshot's place in the sequence (docs/protocol.md)."""

from __future__ import annotations

from typing import Any

import httpx

from metrics_protocol import wire as p
from metrics_server.app import MetricsServer, ServerConfig

REST = p.REST_METRICS_PATH


def view(n: int) -> dict[str, Any]:
    return {"type": "content_view", "contentId": f"c{n}"}


async def test_each_push_is_the_next_seq_and_the_greeting_names_the_latest(
    start_server, subscribe, producer
) -> None:
    srv = await start_server(interval=0.3, push_interval=0)
    sub, prod = await subscribe(srv), await producer(srv)
    epoch, seq = sub.current["epoch"], sub.current["seq"]
    assert (sub.history["epoch"], sub.history["seq"]) == (epoch, seq)  # history leads up to it
    seen = []
    for n in range(1, 4):
        await prod.ok([view(n)])
        seen.append(await sub.recv_metrics("change"))
    seen.append(await sub.recv_metrics("interval", within=2))
    seqs = [m["seq"] for m in seen]
    # change and interval pushes share one sequence; an interval may fall between changes
    assert seqs == list(range(seq + 1, seq + 1 + len(seqs))) or (
        sorted(set(seqs)) == seqs and seqs[0] == seq + 1
    )
    assert {m["epoch"] for m in seen} == {epoch}
    # A later subscriber and the REST answer repeat the latest publication: same (epoch, seq),
    # same data, byte for byte.
    latest = srv.service.latest
    assert latest is not None
    other = await subscribe(srv)
    assert (other.current["epoch"], other.current["seq"]) == (latest.epoch, latest.seq)
    assert other.current["data"] == p.loads(latest.text)["data"]
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        rest = p.loads((await http.get(REST)).text)
    assert (rest["epoch"], rest["seq"]) == (latest.epoch, latest.seq)
    assert rest["data"] == other.current["data"]


async def test_a_push_in_flight_comes_with_its_seq_after_the_greeting(
    start_server, subscribe, producer
) -> None:
    """Three acks inside one coalescing window: the greeting counts all three (its push goes
    out at once) and every subscriber got the same snapshot at the same seq."""
    srv = await start_server(push_interval=5)
    first, prod = await subscribe(srv), await producer(srv)
    for n in range(1, 4):
        await prod.ok([view(n)])
    second = await subscribe(srv)
    assert second.current["data"]["content"]["totalViews"] == 3
    pushed = await first.recv_where(lambda m: m.get("seq") == second.current["seq"], within=1)
    assert pushed["data"] == second.current["data"] and pushed["kind"] == "change"


async def test_resync_answers_the_greeting_again(start_server, subscribe, producer) -> None:
    srv = await start_server(push_interval=0)
    sub, prod = await subscribe(srv), await producer(srv)
    await sub.send({"type": "subscribe", "channels": ["content"]})
    await sub.recv_where(lambda m: m.get("type") == "subscribed")
    await prod.ok([view(1)])
    pushed = await sub.recv_metrics("change")
    await sub.send({"type": "resync"})
    history = await sub.recv_where(lambda m: m.get("type") == "history")
    current = await sub.recv()
    assert (history["epoch"], history["seq"]) == (pushed["epoch"], pushed["seq"])
    assert current["type"] == "metrics" and current["seq"] == pushed["seq"]
    assert current["data"] == pushed["data"] and list(current["data"]) == ["content", "timestamp"]
    await prod.ok([view(2)])  # and it is still in the broadcast, at the next seq
    assert (await sub.recv_metrics("change"))["seq"] == pushed["seq"] + 1


async def test_a_restart_is_a_new_epoch(db_path) -> None:
    epochs = []
    for _ in range(2):
        async with MetricsServer(ServerConfig(port=0, db=str(db_path), interval=3600)) as srv:
            async with httpx.AsyncClient(base_url=srv.http_url) as http:
                body = p.loads((await http.get(REST)).text)
            assert p.position(body) == (body["epoch"], 1)
            epochs.append(body["epoch"])
    assert epochs[0] != epochs[1]


async def test_prometheus_has_the_seq_and_no_broker_series_without_a_broker(
    start_server, producer
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    srv = await start_server(push_interval=0)
    prod = await producer(srv)
    for n in range(3):
        await prod.ok([view(n)])
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        text = (await http.get(p.PROMETHEUS_PATH)).text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["metrics_server_seq"] == srv.service.latest.seq == 4  # start + 3 changes
    assert not any("broker" in name for name in samples)
