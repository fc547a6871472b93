"""The monitor's configuration file: defaults, named servers, --list, [keys], refusals.

Named servers are tested end to end: ``metrics-tui NAME --once --json`` as a subprocess
against a real server that needs a token, the token coming from token_env or token_file.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from metrics_protocol.configfile import ConfigFile
from metrics_protocol.wire import loads
from metrics_tui import app as app_module
from metrics_tui import config
from metrics_tui.app import MetricsApp
from metrics_tui.cli import main
from metrics_tui.screens.help import HelpScreen
from metrics_tui.settings import SETTINGS

from .conftest import TOKEN, ServerHandle
from .test_app_live import EVENTS
from .test_cli import run_cli
from .test_settings import Recorder

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "metrics-tui.toml"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$XDG_CONFIG_HOME for the test; the file goes to home / "metrics-tui/config.toml"."""
    for s in SETTINGS:
        if s.env:
            monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr(app_module, "MetricsApp", Recorder)
    Recorder.seen = {}
    return tmp_path / "xdg"


def write_config(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / "metrics-tui" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one line of a refusal (exit code 2), after "metrics-tui: error: "."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, err
    return lines[0].removeprefix("metrics-tui: error: ")


# --------------------------------------------------------------------------- where and what


def test_default_path_follows_xdg() -> None:
    assert config.default_path({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == (
        "/x/cfg/metrics-tui/config.toml"
    )
    assert config.default_path({"HOME": "/h"}) == "/h/.config/metrics-tui/config.toml"
    relative = {"XDG_CONFIG_HOME": "cfg", "HOME": "/h"}  # ignored, as the XDG spec says
    assert config.default_path(relative) == "/h/.config/metrics-tui/config.toml"


def test_the_default_file_gives_defaults_under_env_and_flags(home, monkeypatch) -> None:
    write_config(home, 'theme = "nord"\nmax_retries = 9\nurl = "ws://127.0.0.1:9/ws/metrics"\n')
    assert main([]) == 0
    seen = Recorder.seen
    assert (seen["theme"], seen["max_retries"], seen["url"]) == (
        "nord",
        9,
        "ws://127.0.0.1:9/ws/metrics",
    )
    monkeypatch.setenv("METRICS_MAX_RETRIES", "8")
    assert main(["--theme", "ansi-dark"]) == 0
    assert (Recorder.seen["theme"], Recorder.seen["max_retries"]) == ("ansi-dark", 8)


def test_no_file_is_fine_but_a_missing_explicit_one_is_not(home, capsys, tmp_path) -> None:
    assert main([]) == 0  # no file at the default place
    missing = tmp_path / "nope.toml"
    assert refused(capsys, ["--config", str(missing)]) == f"{missing}: no such file"


def test_a_file_named_by_its_variable(home, monkeypatch, tmp_path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('theme = "dracula"\n')
    monkeypatch.setenv("METRICS_TUI_CONFIG", str(path))
    assert main([]) == 0
    assert Recorder.seen["theme"] == "dracula"


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("thme = 1\n", 0o600, "line 1: unknown key 'thme' (did you mean 'theme'?)"),
        ('theme = "nope"\n', 0o600, "line 1: theme: unknown theme 'nope'; choose from"),
        ("insecure = true\n", 0o600, "line 1: insecure: --insecure is for the command line only"),
        ("timeout = 0\n", 0o600, "line 1: timeout: must be a positive number, not 0.0"),
        ("[servers.prod]\ntoken_env = 'T'\n", 0o600, "line 1: servers.prod: no url"),
        (
            '[servers.prod]\nurl = "ws://h/"\ntokn_env = "T"\n',
            0o600,
            "line 3: unknown key 'tokn_env' (did you mean 'token_env'?) in [servers.prod]",
        ),
        ('[servers.prod]\nurl = "http://h/"\n', 0o600, "line 2: servers.prod.url: not a ws://"),
        (
            '[servers.prod]\nurl = "ws://h/"\ntoken = "hunter2"\n',
            0o644,
            "line 3: servers.prod.token: a token in a file others can read (mode 0644)",
        ),
        (
            '[servers.prod]\nurl = "ws://h/"\ntoken_env = "A"\ntoken_file = "f"\n',
            0o600,
            "line 4: servers.prod.token_file: give only one of token_env, token_file or token",
        ),
        (
            '[servers.prod]\nurl = "ws://h/"\ncafile = "ca.pem"\n',
            0o600,
            "line 3: servers.prod.cafile: needs a wss:// url",
        ),
        (
            '[servers.prod]\nurl = "wss://h/"\ncafile = "ca.pem"\ninsecure = true\n',
            0o600,
            "line 4: servers.prod.insecure: give cafile or insecure, not both",
        ),
        ("[servers]\nprod = 1\n", 0o600, "line 2: servers.prod: expected a table"),
        ("[keys]\nquitt = 'x'\n", 0o600, "line 2: unknown action 'quitt' (did you mean 'quit'?)"),
        ("[keys]\nquit = 'ctl+q'\n", 0o600, "line 2: keys.quit: unknown modifier 'ctl'"),
        ("[keys]\n\nquit = 'ctrl+qq'\n", 0o600, "line 3: keys.quit: unknown key name 'qq'"),
        ("[keys]\nquit = 3\n", 0o600, 'line 2: keys.quit: expected a key ("ctrl+q")'),
        ("[keys]\npause = 'r'\n", 0o600, "line 2: keys.pause: r is reconnect's key too"),
        ("[keys]\npause = 'ctrl+c'\n", 0o600, "line 2: keys.pause: ctrl+c always quits"),
        ("alerts = 3\n", 0o600, "line 1: alerts: expected [[alerts]] tables"),
        ("[[alerts]\n", 0o600, "line 1: Expected ']]' at the end of an array declaration"),
    ],
)
def test_each_refusal_names_the_line_and_the_key(home, capsys, text, mode, message) -> None:
    path = write_config(home, text, mode)
    line = refused(capsys, [])
    assert line.startswith(f"{path}, {message}"), line
    assert "hunter2" not in line
    assert Recorder.seen == {}


def test_a_token_in_a_private_file_is_taken(home, token_server: ServerHandle) -> None:
    write_config(home, f'[servers.prod]\nurl = "{token_server.url}"\ntoken = "{TOKEN}"\n')
    assert main(["prod"]) == 0
    assert Recorder.seen["token"] == TOKEN


# --------------------------------------------------------------------------- named servers


def servers_file(home: Path, server: ServerHandle, token_file: Path) -> Path:
    return write_config(
        home,
        f"""
url = "ws://127.0.0.1:9/ws/metrics"  # the default server: not the one named below
[servers.prod]
url = "{server.url}"
token_env = "PROD_TOKEN"

[servers.staging]
url = "{server.url}"
token_file = "{token_file}"

[servers.open]
url = "{server.url}"
""",
    )


async def test_named_servers_connect_with_their_tokens(
    home, tmp_path, token_server: ServerHandle
) -> None:
    await token_server.service.ingest(EVENTS)
    token_file = tmp_path / "staging.token"
    token_file.write_text(TOKEN + "\n")
    servers_file(home, token_server, token_file)
    env = {"PROD_TOKEN": TOKEN, "XDG_CONFIG_HOME": str(home)}
    for name in ("prod", "staging"):
        code, out, err = await run_cli(name, "--once", "--json", env=env)
        assert code == 0, err
        assert loads(out)["revenue"]["total"] == Decimal("1212.75")
    # a server without a token gets none, even with METRICS_TOKEN set (it may be another's)
    env["METRICS_TOKEN"] = TOKEN
    code, out, err = await run_cli("open", "--once", env=env)
    assert code == 1 and "check --token" in err, err
    # but a flag still wins over the entry
    code, out, err = await run_cli("open", "--once", "--token", TOKEN, env=env)
    assert code == 0, err
    # the token's variable unset: refused before connecting, with the line that names it
    del env["PROD_TOKEN"]
    code, out, err = await run_cli("prod", "--once", env=env)
    assert code == 2
    assert err.strip().endswith("line 5: servers.prod.token_env: environment variable "
                                "PROD_TOKEN is not set")  # fmt: skip


def test_a_named_server_wins_over_env_and_top_level_keys(home, monkeypatch, tmp_path) -> None:
    write_config(
        home,
        'url = "ws://127.0.0.1:9/ws/metrics"\n'
        '[servers.prod]\nurl = "ws://127.0.0.1:7/ws/metrics"\ntoken_env = "PROD_TOKEN"\n',
    )
    monkeypatch.setenv("METRICS_WS_URL", "ws://127.0.0.1:8/ws/metrics")
    monkeypatch.setenv("METRICS_TOKEN", "other")
    monkeypatch.setenv("PROD_TOKEN", "mine")
    assert main([]) == 0
    assert (Recorder.seen["url"], Recorder.seen["token"]) == (
        "ws://127.0.0.1:8/ws/metrics",
        "other",
    )
    assert main(["prod"]) == 0
    assert (Recorder.seen["url"], Recorder.seen["token"]) == ("ws://127.0.0.1:7/ws/metrics", "mine")
    assert main(["prod", "--token", "flag"]) == 0
    assert Recorder.seen["token"] == "flag"


def test_unknown_server_names_the_known_ones(home, capsys) -> None:
    path = write_config(home, '[servers.prod]\nurl = "ws://h/"\n[servers.lab]\nurl = "ws://l/"\n')
    assert refused(capsys, ["prdo"]) == (
        f"unknown server 'prdo' (did you mean 'prod'?); {path} names: prod, lab"
    )
    assert refused(capsys, ["prod", "--url", "ws://x/"]) == (
        "give SERVER, --url or --demo, not two of them"
    )
    path.unlink()
    assert refused(capsys, ["prod"]) == f"unknown server 'prod': no configuration file ({path})"


def test_list_shows_names_urls_and_where_tokens_come_from(home, capsys, monkeypatch) -> None:
    path = write_config(
        home,
        '[servers.prod]\nurl = "wss://metrics.example/ws/metrics"\ntoken_env = "PROD_TOKEN"\n'
        '[servers.staging]\nurl = "ws://10.0.0.2:3000/ws/metrics"\ntoken_file = "s.token"\n'
        '[servers.mine]\nurl = "ws://127.0.0.1:3000/ws/metrics"\ntoken = "hunter2"\n'
        '[servers.open]\nurl = "ws://127.0.0.1:3001/ws/metrics"\n',
    )
    monkeypatch.setenv("PROD_TOKEN", "s3cret")
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert [re.split(r"\s{2,}", line) for line in out.splitlines()] == [
        ["NAME", "URL", "TOKEN"],
        ["prod", "wss://metrics.example/ws/metrics", "env PROD_TOKEN"],
        ["staging", "ws://10.0.0.2:3000/ws/metrics", f"file {path.parent / 's.token'}"],
        ["mine", "ws://127.0.0.1:3000/ws/metrics", "token in the config file"],
        ["open", "ws://127.0.0.1:3001/ws/metrics", "no token"],
    ]
    assert len({line.index(" ws") for line in out.splitlines()[2:]}) == 1  # in columns
    assert "s3cret" not in out and "hunter2" not in out
    monkeypatch.delenv("PROD_TOKEN")
    assert main(["--list"]) == 0
    assert "env PROD_TOKEN (not set)" in capsys.readouterr().out
    path.unlink()
    assert main(["--list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no configuration file" in captured.err


# --------------------------------------------------------------------------- alerts


def test_alert_tables_are_kept_in_order_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[alerts]]\nname = "a"\nabove = 0\n\n[[alerts]]\nname = "b"\nbelow = 5\n')
    monitor = config.load(ConfigFile.read(str(path)))
    assert [a["name"] for a in monitor.alerts_raw] == ["a", "b"]
    assert monitor.alert_line(1, "below") == f"{path}, line 7"
    assert monitor.alert_line(0) == f"{path}, line 1"


# --------------------------------------------------------------------------- keys


def footer_keys(app: MetricsApp) -> dict[str, str]:
    """action -> the key label the footer shows for it."""
    keys = app.screen.query_one(Footer).query(FooterKey)
    return {k.action: k.key_display for k in keys if k.display}


async def test_rebound_keys_work_and_show_in_the_footer_and_help(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[keys]\npause = "space"\nhelp = "h"\nquit = "ctrl+q,x"\n')
    keymap = config.load(ConfigFile.read(str(path))).keys
    assert keymap == {"pause": "space", "help": "h", "quit": "ctrl+q,x"}
    app = MetricsApp("ws://127.0.0.1:9/ws/metrics", connect=False, animate=False, keymap=keymap)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = footer_keys(app)
        assert (shown["toggle_pause"], shown["help"], shown["quit"]) == ("space", "h", "^q")
        assert shown["reconnect"] == "r"  # not rebound: unchanged
        await pilot.press("p")
        assert not app.paused  # the old key no longer pauses
        await pilot.press("space")
        assert app.paused
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        assert "ctrl+q quit  r reconnect now  space pause/resume  h help" in text
        assert "escape, h or x closes" in text  # not ctrl+q, which quits from anywhere
        await pilot.press("h")  # the help key closes the help too
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running  # q no longer quits
        await pilot.press("x")
        await pilot.pause()
        assert not app.is_running


async def test_the_quit_key_kept_alongside_a_new_one(tmp_path: Path) -> None:
    app = MetricsApp("ws://127.0.0.1:9/ws/metrics", connect=False, keymap={"quit": "f10,q"})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert footer_keys(app)["quit"] == "f10"
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_default_keys_unchanged_in_the_help() -> None:
    app = MetricsApp("ws://127.0.0.1:9/ws/metrics", connect=False, animate=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = str(app.screen.query_one(Static).render())
        assert text.startswith("q quit  r reconnect now  p pause/resume  ? help\n")
        assert "escape, ? or q closes" in text


def test_keys_are_normalised_as_textual_names_them() -> None:
    assert config.normalise_key("?") == ("question_mark", None)
    assert config.normalise_key("ctrl+/") == ("ctrl+slash", None)
    assert config.normalise_key("f5") == ("f5", None)
    assert config.normalise_key("shift+tab") == ("shift+tab", None)
    assert config.normalise_key("question_mark") == ("question_mark", None)
    assert config.normalise_key(" ")[1] is not None
    assert config.normalise_key("ctrl+")[1] is not None


# --------------------------------------------------------------------------- the example


def test_the_example_is_current() -> None:
    assert EXAMPLE.read_text() == config.example(), (
        "regenerate it: python -c 'from metrics_tui.config import example; "
        'print(example(), end="")\' > examples/metrics-tui.toml'
    )


def test_the_example_documents_every_key_and_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert tomllib.loads(text) == {}  # everything commented out: the defaults
    path = tmp_path / "all.toml"
    path.write_text(re.sub(r"^#(?=\S)", "", text, flags=re.M))
    path.chmod(0o600)
    file = ConfigFile.read(str(path))
    for s in SETTINGS:
        if s.in_file:
            assert (f"{s.name}_file" if s.secret else s.name) in file.data, s.name
    servers = file.data["servers"]
    documented = {key for entry in servers.values() for key in entry}
    assert documented | {"token"} == set(config.SERVER_KEYS)  # token: in the prose only
    assert "token = " in text
    assert set(file.data["keys"]) == set(config.key_actions())
    monitor = config.load(file, {"PROD_METRICS_TOKEN": "t"})
    assert set(monitor.servers) == {"prod", "staging", "lab"}
    assert monitor.alerts_raw and monitor.alerts_raw[0]["metric"] == "transactions.failed"
