"""TLS: with --certfile/--keyfile the one port speaks wss:// and https:// only.

The certificate is made for each test and trusted by nothing but the test's own client context,
so a pass proves the server presented it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

REST = "/api/v1/analytics/realtime-metrics"


async def test_wss_and_https_with_a_trusted_certificate(
    run_cli, tls_files: tuple[Path, Path], client_tls: ssl.SSLContext
) -> None:
    cert, key = tls_files
    srv = await run_cli(
        "--certfile", str(cert), "--keyfile", str(key), "--token", "t0k", tls=client_tls
    ).ready()
    auth = {"Authorization": "Bearer t0k"}

    async with connect(srv.url("/ws/ingest"), ssl=client_tls) as prod:
        batch = {"type": "events", "id": 7, "events": [{"type": "content_view", "contentId": "c"}]}
        await prod.send(json.dumps(batch))
        assert json.loads(await asyncio.wait_for(prod.recv(), 3)) == {
            "type": "ack",
            "id": 7,
            "accepted": 1,
        }
    async with connect(srv.url("/ws/metrics"), ssl=client_tls, additional_headers=auth) as sub:
        assert srv.url("/ws/metrics").startswith("wss://")
        assert json.loads(await asyncio.wait_for(sub.recv(), 3))["type"] == "history"
        current = json.loads(await asyncio.wait_for(sub.recv(), 3))
        assert current["data"]["content"]["totalViews"] == 1
    async with httpx.AsyncClient(verify=client_tls, timeout=3) as http:
        resp = await http.get(srv.url(REST, "http"), headers=auth)
        assert resp.url.scheme == "https" and resp.status_code == 200
        assert resp.json()["data"]["content"]["totalViews"] == 1

    # Plain text on the TLS port fails on the client's side, quickly and without a hang.
    plain = f"ws://127.0.0.1:{srv.port}/ws/metrics"
    with pytest.raises((InvalidHandshake, OSError, EOFError)):
        async with connect(plain, open_timeout=3, additional_headers=auth):
            pass
    async with httpx.AsyncClient(timeout=3) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"http://127.0.0.1:{srv.port}/healthz")
    # A client that does not trust the certificate refuses it: it is really TLS, not a mock.
    with pytest.raises(ssl.SSLCertVerificationError):
        async with connect(srv.url("/ws/metrics"), ssl=ssl.create_default_context()):
            pass
    # ... and the server serves on after all that.
    with pytest.raises(InvalidStatus) as refused:  # no token
        async with connect(srv.url("/ws/metrics"), ssl=client_tls):
            pass
    assert refused.value.response.status_code == 401
    async with connect(srv.url("/ws/metrics"), ssl=client_tls, additional_headers=auth) as sub:
        assert json.loads(await asyncio.wait_for(sub.recv(), 3))["type"] == "history"

    assert srv.stop() == 0
    assert "wss://127.0.0.1" in srv.stderr  # the startup line gives the right scheme
    assert "Traceback" not in srv.stderr
    assert "t0k" not in srv.stderr


async def test_certificate_and_key_in_one_file(
    start_server, tls_files: tuple[Path, Path], client_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    cert, key = tls_files
    both = tmp_path / "both.pem"
    both.write_bytes(key.read_bytes() + cert.read_bytes())
    srv = await start_server(certfile=str(both))
    assert srv.url.startswith("wss://") and srv.http_url.startswith("https://")
    async with connect(srv.url, ssl=client_tls) as sub:
        assert json.loads(await asyncio.wait_for(sub.recv(), 3))["type"] == "history"


@pytest.mark.parametrize(
    "flags",
    [
        ["--certfile", "missing/cert.pem"],
        ["--certfile", "CERT", "--keyfile", "missing/key.pem"],
        ["--certfile", "NOT_PEM"],
        ["--certfile", "CERT", "--keyfile", "CERT"],  # a certificate is not a key
        ["--keyfile", "KEY"],
    ],
    ids=["no-cert", "no-key", "not-pem", "cert-as-key", "key-alone"],
)
def test_bad_tls_files_exit_2_with_one_line(
    run_quick, tls_files: tuple[Path, Path], tmp_path: Path, flags: list[str]
) -> None:
    cert, key = tls_files
    (tmp_path / "junk.txt").write_text("not a certificate\n")
    names = {"CERT": str(cert), "KEY": str(key), "NOT_PEM": str(tmp_path / "junk.txt")}
    result = run_quick(*(names.get(f, f) for f in flags), "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("metrics-server: error:"), result.stderr
    assert ("certificate" in last) or ("--certfile" in last)
