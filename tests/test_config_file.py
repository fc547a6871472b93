"""The configuration file layer of both programs' settings: precedence, line numbers, refusals.

Every refusal is one line, "prog: error: FILE, line N: key: reason", with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_protocol import settings
from metrics_protocol.configfile import ConfigFile, key_lines, toml_value
from metrics_protocol.settings import Setting
from metrics_server import cli as server_cli
from metrics_server.settings import SETTINGS as SERVER
from metrics_tui import cli as tui_cli
from metrics_tui.settings import SETTINGS as TUI

PROGRAMS: dict[str, tuple[tuple[Setting, ...], Callable[[], argparse.ArgumentParser]]] = {
    "metrics-server": (SERVER, server_cli.build_parser),
    "metrics-tui": (TUI, tui_cli.build_parser),
}
#: For each program: a setting, and its values by flag, variable and file, all different
#: from each other and from the default.
LAYERS = {
    "metrics-server": ("max_clients", ["--max-clients", "7"], {"METRICS_MAX_CLIENTS": "8"}, 9),
    "metrics-tui": ("max_retries", ["--max-retries", "7"], {"METRICS_MAX_RETRIES": "8"}, 9),
}


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def parse(prog: str, argv: list[str], environ: dict[str, str] | None = None) -> settings.Config:
    table, build = PROGRAMS[prog]
    return settings.parse(build(), table, argv, environ or {})


def refusal(capsys: pytest.CaptureFixture[str], prog: str, path: Path, env=None) -> str:
    """The one line of a refused configuration file, after "prog: error: "."""
    with pytest.raises(SystemExit) as exit_:
        parse(prog, ["--config", str(path)], env)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "usage:" not in err, err
    assert err.startswith(f"{prog}: error: {path}"), err
    return err.strip().split(": error: ", 1)[1].removeprefix(str(path))


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize("prog", PROGRAMS)
def test_flag_beats_env_beats_file_beats_default(prog: str, tmp_path: Path) -> None:
    name, flag, env, in_file = LAYERS[prog]
    path = write(tmp_path, f"{name} = {in_file}\n")
    cfg = ["--config", str(path)]
    default = next(s.default for s in PROGRAMS[prog][0] if s.name == name)
    cases = [
        ([*cfg, *flag], env, 7, "flag"),
        (cfg, env, 8, "env"),
        (cfg, {}, 9, "file"),
        ([], {}, default, "default"),
    ]
    for argv, environ, value, origin in cases:
        config = parse(prog, argv, environ)
        assert (getattr(config, name), config.origin(name)) == (value, origin), (argv, environ)
    assert parse(prog, cfg).source(name) == f"{path}, line 1: {name}"


def test_config_file_from_its_variable_and_empty_flag_reads_none(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 4001\n")
    assert parse("metrics-server", [], {"METRICS_CONFIG": str(path)}).port == 4001
    assert parse("metrics-server", ["--config", ""], {"METRICS_CONFIG": str(path)}).port == 3000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo = true", True),
        ("interval = 2", 2.0),  # a whole number is a number
        ("push_interval = 0", 0.0),
        ('tz = "Europe/Paris"', "Europe/Paris"),
    ],
)
def test_file_values_of_each_type(tmp_path: Path, text: str, expected: object) -> None:
    config = parse("metrics-server", ["--config", str(write(tmp_path, text + "\n"))])
    name = text.split()[0]
    assert getattr(config, name) == expected
    assert type(getattr(config, name)) is type(expected)


def test_paths_are_taken_from_the_files_directory(tmp_path: Path, monkeypatch) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    path = write(conf, 'db = "data/m.db"\ncertfile = "/abs/cert.pem"\n')
    monkeypatch.chdir(tmp_path)
    config = parse("metrics-server", ["--config", str(path)])
    assert config.db == str(conf / "data" / "m.db")
    assert config.certfile == "/abs/cert.pem"
    monkeypatch.setenv("HOME", str(tmp_path))
    path.write_text('db = "~/m.db"\n')
    assert parse("metrics-server", ["--config", str(path)]).db == str(tmp_path / "m.db")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "port = 1\nmax_client = 5\n",
            ", line 2: unknown key 'max_client' (did you mean 'max_clients'?)",
        ),
        ('\n\nport = "3000"\n', ", line 3: port: expected a whole number, not a string"),
        ("port = 70000\n", ", line 1: port: must be 0-65535, not 70000"),
        ("port = 1.5\n", ", line 1: port: expected a whole number, not a number"),
        ("interval = true\n", ", line 1: interval: expected a number, not true or false"),
        ("interval = nan\n", ", line 1: interval: must be a positive number, not nan"),
        ('demo = "yes"\n', ", line 1: demo: expected true or false, not a string"),
        ("host = 1\n", ", line 1: host: expected a string, not a whole number"),
        ('tz = "Mars/Base"\n', ", line 1: tz: unknown time zone 'Mars/Base'"),
        ("[port]\nx = 1\n", ", line 1: port: expected a whole number, not a table"),
        ('config = "other.toml"\n', ", line 1: config: --config is for the command line only"),
        (
            "print_config = true\n",
            ", line 1: print_config: --print-config is for the command line only",
        ),
        ("port = \n", ", line 1: Invalid value (column 8)"),
        ("port = 1\n[tls\n", ", line 2: Expected ']' at the end of a table declaration (column 5)"),
        ("port = 1\nport = 2\n", ", line 2: Cannot overwrite a value (column 9)"),
        (
            'token_file = "a"\ntoken_env = "B"\n',
            ", line 2: token_env: give only one of token_file, token_env, token",
        ),
        (
            'token_env = "not a name"\n',
            ", line 1: token_env: not an environment variable name: 'not a name'",
        ),
        ('token_file = ""\n', ", line 1: token_file: expected a string, not an empty one"),
    ],
)
def test_each_refusal_names_the_line_and_the_key(tmp_path, capsys, text, message) -> None:
    assert refusal(capsys, "metrics-server", write(tmp_path, text)) == message


def test_a_missing_or_unreadable_file_given_explicitly(tmp_path, capsys) -> None:
    assert refusal(capsys, "metrics-server", tmp_path / "nope.toml") == ": no such file"
    assert refusal(capsys, "metrics-server", tmp_path) == ": cannot read it: Is a directory"
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'host = "caf\xe9"\n')
    assert refusal(capsys, "metrics-server", path) == ", line 1: not UTF-8 text"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_in_a_file_others_can_read_is_refused(tmp_path, capsys, mode) -> None:
    path = write(tmp_path, 'port = 1\ningest_token = "hunter2"\n', mode=mode)
    line = refusal(capsys, "metrics-server", path)
    assert line.startswith(
        f", line 2: ingest_token: a token in a file others can read (mode {mode:04o}): use "
        "ingest_token_file or ingest_token_env, or make the file private (chmod 600"
    )
    assert "hunter2" not in line


def test_a_token_in_a_private_file_is_taken(tmp_path: Path) -> None:
    path = write(tmp_path, 'token = "r3ad"\n', mode=0o600)
    assert parse("metrics-server", ["--config", str(path)]).token == "r3ad"


def test_token_from_a_file_or_a_variable_read_only_when_used(tmp_path, capsys) -> None:
    (tmp_path / "read.token").write_text("r3ad\n")
    path = write(
        tmp_path,
        'token_file = "read.token"\ningest_token_env = "INGEST"\n',
        mode=0o644,  # references to tokens may be read by anyone
    )
    config = parse("metrics-server", ["--config", str(path)], {"INGEST": "wr1te"})
    assert (config.token, config.ingest_token) == ("r3ad", "wr1te")
    # a flag or the setting's own variable spares the read: no error for the unset INGEST
    config = parse("metrics-server", ["--config", str(path), "--ingest-token", "x"])
    assert config.ingest_token == "x"
    assert refusal(capsys, "metrics-server", path) == (
        ", line 2: ingest_token_env: environment variable INGEST is not set"
    )
    (tmp_path / "read.token").unlink()
    assert refusal(capsys, "metrics-server", path, {"INGEST": "w"}) == (
        f", line 1: token_file: cannot read {tmp_path / 'read.token'}: No such file or directory"
    )
    (tmp_path / "read.token").write_text(" \n")
    assert refusal(capsys, "metrics-server", path, {"INGEST": "w"}) == (
        f", line 1: token_file: {tmp_path / 'read.token'} is empty"
    )


def test_a_bad_file_is_refused_even_when_flags_override_its_keys(tmp_path, capsys) -> None:
    """Mistakes are caught when they are made, not when a flag stops covering them."""
    path = write(tmp_path, 'port = "x"\n')
    with pytest.raises(SystemExit):
        parse("metrics-server", ["--config", str(path), "--port", "1"])
    assert "line 1: port" in capsys.readouterr().err


# --------------------------------------------------------------------------- lines of keys


def test_key_lines_follow_tables_arrays_quotes_and_dots() -> None:
    text = "\n".join(
        [
            'top = 1  # "quoted" = 2',  # 1
            "[servers.prod]",  # 2
            'url = "wss://x"',  # 3
            '"token_env" = "T"',  # 4
            "[ servers . 'my lab' ]",  # 5
            "cafile.path = 'x'",  # 6
            "[[alerts]]",  # 7
            'name = """',  # 8
            "above = 1",  # 9: inside a multi-line string
            '"""',  # 10
            "[[alerts]]",  # 11
            "above = [",  # 12
            '  ["below"],',  # 13: inside a multi-line array
            "]",  # 14
            "[alerts.extra]",  # 15: in the latest [[alerts]] entry
            "x = 1",  # 16
        ]
    )
    tomllib.loads(text)  # the scan is of a valid document
    lines = key_lines(text)
    assert lines[("top",)] == 1
    assert lines[("servers", "prod")] == 2
    assert lines[("servers", "prod", "url")] == 3
    assert lines[("servers", "prod", "token_env")] == 4
    assert lines[("servers", "my lab")] == 5
    assert lines[("servers", "my lab", "cafile", "path")] == 6
    assert lines[("alerts", 0)] == 7
    assert lines[("alerts", 0, "name")] == 8
    assert ("alerts", 0, "above") not in lines
    assert lines[("alerts", 1)] == 11
    assert lines[("alerts", 1, "above")] == 12
    assert ("below",) not in lines and ("alerts", 1, "below") not in lines
    assert lines[("alerts", 1, "extra", "x")] == 16


def test_a_key_in_an_inline_table_is_placed_at_its_enclosing_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'a = 1\nservers = { prod = { url = "x" } }\n')
    file = ConfigFile.read(str(path))
    assert file.line(("servers", "prod", "url")) == 2
    assert file.where(("servers", "prod", "url")) == f"{path}, line 2"


@given(st.text())
def test_any_string_is_written_as_toml_that_reads_back(value: str) -> None:
    """--print-config writes values through toml_value: control characters, quotes and
    backslashes included."""
    assert tomllib.loads(f"k = {toml_value(value)}")["k"] == value


# --------------------------------------------------------------------------- --print-config


def test_print_config_round_trips_and_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ingest.token").write_text("wr1te\n")
    path = write(
        tmp_path,
        'interval = 2\ningest_token_file = "ingest.token"\norigins = "https://a, https://b"\n',
    )
    env = {"METRICS_TOKEN": "r3ad", "METRICS_HISTORY": "7"}
    args = server_cli_settings(["--config", str(path), "--port", "4001", "--db", "x.db"], env)
    text = server_cli.print_config(args)
    assert "r3ad" not in text and "wr1te" not in text
    lines = {line.split(" = ")[0]: line for line in text.splitlines() if " = " in line}
    assert lines["port"] == "port = 4001  # flag --port"
    assert lines["history"] == "history = 7  # environment variable METRICS_HISTORY"
    assert lines["interval"] == f"interval = 2.0  # file {path}, line 1"
    assert lines["db"] == f'db = "{tmp_path / "x.db"}"  # flag --db'
    assert lines["host"] == 'host = "127.0.0.1"  # default'
    assert lines["ingest_token_file"].startswith(f'ingest_token_file = "{tmp_path}/ingest.token"')
    assert "# token: set, not printed (environment variable METRICS_TOKEN)" in text
    assert "# certfile: not set" in text
    # loaded back from elsewhere, alone, it gives the same settings (but the token)
    expected = {s.name: _absolute(s, getattr(args, s.name)) for s in SERVER if s.in_file}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    printed = write(elsewhere, text)
    monkeypatch.chdir(elsewhere)
    again = server_cli_settings(["--config", str(printed)], {})
    for s in SERVER:
        if s.in_file and s.name != "token":
            assert getattr(again, s.name) == expected[s.name], s.name
    assert again.token is None and again.ingest_token == "wr1te"
    assert tomllib.loads(server_cli.print_config(again)) == tomllib.loads(text)


def test_print_config_leaves_the_demo_database_out(tmp_path: Path) -> None:
    text = server_cli.print_config(server_cli_settings(["--demo"], {}))
    assert "\ndb = " not in text and "# db: not set: --demo keeps its data" in text
    path = write(tmp_path, text)
    assert server_cli.parse_config(["--config", str(path)]).db == server_cli.DEMO_DB


def _absolute(s: Setting, value: object) -> object:
    return os.path.abspath(value) if s.is_path and isinstance(value, str) else value


def server_cli_settings(argv: list[str], environ: dict[str, str]) -> settings.Config:
    return settings.parse(server_cli.build_parser(), SERVER, argv, environ)
