"""metrics-tui's settings from the environment, through main() to the app it starts."""

from __future__ import annotations

from typing import Any

import pytest

from metrics_tui import app as app_module
from metrics_tui.app import MetricsApp
from metrics_tui.cli import main
from metrics_tui.settings import SETTINGS

URL = "ws://127.0.0.1:1/ws/metrics"


class Recorder:
    """Stands in for MetricsApp to see what main() hands it; runs nothing."""

    seen: dict[str, Any] = {}
    BINDINGS = MetricsApp.BINDINGS  # what a config file's [keys] may rebind

    def __init__(self, url: str, **kwargs: Any) -> None:
        Recorder.seen = {"url": url, **kwargs}
        self.return_code = 0

    async def run_async(self) -> None:
        return None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    for s in SETTINGS:
        if s.env:
            monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")  # TERM=dumb is refused before the app starts
    monkeypatch.setattr(app_module, "MetricsApp", Recorder)
    Recorder.seen = {}
    return Recorder


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_env_vars_reach_the_app(recorder, monkeypatch) -> None:
    monkeypatch.setenv("METRICS_WS_URL", URL)
    monkeypatch.setenv("METRICS_TOKEN", "r3ad")
    monkeypatch.setenv("METRICS_MAX_RETRIES", "2")
    monkeypatch.setenv("METRICS_THEME", "nord")
    assert main([]) == 0
    seen = recorder.seen
    assert (seen["url"], seen["token"], seen["max_retries"], seen["theme"]) == (
        URL,
        "r3ad",
        2,
        "nord",
    )
    assert main(["--max-retries", "5", "--theme", "ansi-dark"]) == 0  # flags win
    assert (recorder.seen["max_retries"], recorder.seen["theme"]) == (5, "ansi-dark")


def test_defaults_reach_the_app(recorder) -> None:
    assert main([]) == 0
    seen = recorder.seen
    assert seen["url"] == "ws://localhost:3000/ws/metrics"
    assert (seen["token"], seen["max_retries"], seen["theme"], seen["tls"]) == (None,) * 4


def test_bad_env_values_name_the_variable(recorder, monkeypatch, capsys) -> None:
    monkeypatch.setenv("METRICS_THEME", "no-such-theme")
    assert "error: environment variable METRICS_THEME: unknown theme" in usage_error(capsys, [])
    assert "error: --theme: unknown theme" in usage_error(capsys, ["--theme", "nope"])
    monkeypatch.delenv("METRICS_THEME")
    monkeypatch.setenv("METRICS_WS_URL", "http://x")
    line = usage_error(capsys, [])
    assert "error: environment variable METRICS_WS_URL: not a ws:// or wss:// URL" in line
    assert recorder.seen == {}


def test_cafile_variable_is_ignored_for_ws_but_the_flag_is_refused(
    recorder, monkeypatch, capsys, tmp_path
) -> None:
    """METRICS_CAFILE may be set for other (wss://) servers; an explicit --cafile with ws://
    most likely meant wss://."""
    monkeypatch.setenv("METRICS_CAFILE", str(tmp_path / "missing.pem"))
    assert main(["--url", URL]) == 0
    assert recorder.seen["tls"] is None
    assert "need a wss:// URL" in usage_error(capsys, ["--url", URL, "--cafile", "x.pem"])
