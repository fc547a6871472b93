"""REST polling when a proxy refuses WebSocket upgrades, and back to Live when it allows them."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from metrics_tui.app import MetricsApp
from metrics_tui.messages import ConnState

from .conftest import ServerHandle, wait_until
from .test_app_live import EVENTS


class UpgradeBlockingProxy:
    """A tiny HTTP/1.1 reverse proxy that answers 403 to WebSocket upgrades (while blocking)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocking = True
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if self.blocking and b"upgrade: websocket" in head.lower():
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_w.write(head)
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()


async def test_polls_rest_when_upgrades_are_blocked(server: ServerHandle) -> None:
    await server.service.ingest(EVENTS)
    proxy = UpgradeBlockingProxy(server.port)
    port = await proxy.start()
    try:
        app = MetricsApp(f"ws://127.0.0.1:{port}/ws/metrics", animate=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(lambda: app.status.state is ConnState.POLLING, what="polling")
            await wait_until(lambda: app.latest is not None, what="REST snapshot")
            assert app.latest is not None and app.latest.revenue is not None
            assert app.latest.revenue.total == Decimal("1212.75")
            assert "Polling (REST)" in str(app.status_line.render())
            # the WebSocket keeps being retried behind the polling; once allowed, Live again
            proxy.blocking = False
            await pilot.press("r")
            await wait_until(lambda: app.status.state is ConnState.LIVE, within=20, what="live")
    finally:
        await proxy.stop()
