"""Both programs' settings tables: each setting whole, flags and env vars that agree, and a
clear error naming the variable for a bad env value."""

from __future__ import annotations

import argparse
import keyword
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from metrics_protocol import settings
from metrics_protocol.settings import Setting
from metrics_server import cli as server_cli
from metrics_server.settings import SETTINGS as SERVER
from metrics_tui import cli as tui_cli
from metrics_tui.settings import SETTINGS as TUI

README = Path(__file__).resolve().parents[1] / "README.md"

PROGRAMS: dict[str, tuple[tuple[Setting, ...], Callable[[], argparse.ArgumentParser]]] = {
    "metrics-server": (SERVER, server_cli.build_parser),
    "metrics-tui": (TUI, tui_cli.build_parser),
}

#: Modes of one run: command line only, no variable (see metrics_tui/settings.py for
#: --insecure and --db). Everything else must have one.
RUN_MODES = {
    "metrics-server": {"print_config"},
    "metrics-tui": {"demo", "db", "insecure", "once", "json", "list", "check"},
}

#: A good value for every setting that has a variable, and what it parses to. A new setting
#: fails test_samples_cover_every_setting until it is given one here.
GOOD = {
    "metrics-server": {
        "config": ("/dev/null", "/dev/null"),  # an empty configuration file
        "host": ("0.0.0.0", "0.0.0.0"),
        "port": ("4001", 4001),
        "db": ("/srv/other.db", "/srv/other.db"),
        "store": ("postgresql://m@db.example/metrics", "postgresql://m@db.example/metrics"),
        "broker": ("redis://redis.example:6379/0", "redis://redis.example:6379/0"),
        "interval": ("0.5", 0.5),
        "tz": ("Europe/Paris", "Europe/Paris"),
        "history": ("7", 7),
        "push_interval": ("0e0", 0.0),
        "retention": ("30", 30.0),
        "demo": ("yes", True),
        "token": ("r3ad", "r3ad"),
        "ingest_token": ("wr1te", "wr1te"),
        "origins": ("https://a.example", "https://a.example"),
        "certfile": ("/etc/x/cert.pem", "/etc/x/cert.pem"),
        "keyfile": ("/etc/x/key.pem", "/etc/x/key.pem"),
        "max_clients": ("5", 5),
        "max_message_size": ("1024", 1024),
        "max_batch_size": ("4096", 4096),
        "rate_limit": ("2.5", 2.5),
        "log_format": ("JSON", "json"),
        "log_level": ("Debug", "debug"),
    },
    "metrics-tui": {
        "config": ("/dev/null", "/dev/null"),
        "url": ("wss://metrics.example:3000/ws/metrics", "wss://metrics.example:3000/ws/metrics"),
        "token": ("r3ad", "r3ad"),
        "cafile": ("/etc/x/ca.pem", "/etc/x/ca.pem"),
        "timeout": ("0.5", 0.5),
        "max_retries": ("3", 3),
        "theme": ("nord", "nord"),
        "export_dir": ("/srv/exports", "/srv/exports"),
    },
}

#: Values each setting's type refuses.
BAD = {
    "metrics-server": [
        ("port", "abc"),
        ("port", "70000"),
        ("interval", "-1"),
        ("interval", "nan"),
        ("tz", "Mars/Base"),
        ("history", "0"),
        ("push_interval", "-0.5"),
        ("max_clients", "0"),
        ("max_message_size", "64k"),
        ("max_batch_size", "0"),
        ("rate_limit", "inf"),
        ("store", "mysql://h/d"),
        ("broker", "http://r:6379"),
        ("log_format", "yaml"),
        ("log_level", "verbose"),
    ],
    "metrics-tui": [
        ("url", "http://x"),
        ("url", "ws://h:99999/"),
        ("timeout", "0"),
        ("timeout", "nan"),
        ("max_retries", "-1"),
    ],
}

ALL = [(prog, s) for prog, (table, _) in PROGRAMS.items() for s in table]


def parse(prog: str, argv: list[str], environ: dict[str, str]) -> settings.Config:
    table, build = PROGRAMS[prog]
    return settings.parse(build(), table, argv, environ)


def refusal(capsys: pytest.CaptureFixture[str], prog: str, argv: list[str], env: dict) -> str:
    """The one error line of a refused command line or environment (exit code 2)."""
    with pytest.raises(SystemExit) as exit_:
        parse(prog, argv, env)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0].split(": error: ", 1)[1]


def one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- the tables


@pytest.mark.parametrize(("prog", "s"), ALL, ids=[f"{p}:{s.name}" for p, s in ALL])
def test_every_setting_is_declared_whole(prog: str, s: Setting) -> None:
    assert s.name.isidentifier() and s.name.islower() and not keyword.iskeyword(s.name)
    assert s.help and not re.search(r"\[METRICS_|\(default", s.help), "the table adds these"
    assert (s.env is None) == (s.name in RUN_MODES[prog])
    if s.env:
        assert re.fullmatch(r"METRICS_[A-Z_]+", s.env)
    if s.switch:
        assert s.default is False and s.parse is settings.text
    elif s.default is not None:  # the default is a value its own type accepts, unchanged
        shown = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
        assert s.parse(shown) == s.default
        assert type(s.parse(shown)) is type(s.default)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_names_flags_and_variables_are_unique(prog: str) -> None:
    table = PROGRAMS[prog][0]
    envs = [s.env for s in table if s.env]
    assert len({s.name for s in table}) == len(table)
    assert len(set(envs)) == len(envs)


def test_tokens_are_secret() -> None:
    assert {s.name for s in SERVER if s.secret} == {"token", "ingest_token"}
    assert {s.name for s in TUI if s.secret} == {"token"}


@pytest.mark.parametrize("prog", PROGRAMS)
def test_help_shows_each_flag_with_its_variable_and_default(prog: str) -> None:
    table, build = PROGRAMS[prog]
    text = build().format_help()
    entries = {e.split()[0]: one_line(e) for e in re.split(r"\n  (?=--)", text)[1:]}
    for s in table:
        line = entries[s.flag]
        if s.env:
            assert f"[{s.env}]" in line, line
        if s.shown_default is not None:
            assert f"(default {s.shown_default})" in line, line
        elif s.default not in (None, False):
            shown = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
            assert f"(default {shown})" in line, line
        if s.secret:
            assert "default" not in line
    assert settings.ENV_NOTE in one_line(text)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_parser_has_exactly_the_table_flags(prog: str) -> None:
    table, build = PROGRAMS[prog]
    parser = build()
    flags = {o for a in parser._actions for o in a.option_strings}
    assert flags - {"-h", "--help", "--version"} == {s.flag for s in table}
    dests = {
        a.dest
        for a in parser._actions
        if a.option_strings and a.option_strings[0] not in ("-h", "--version")
    }
    assert dests == {s.name for s in table}


# --------------------------------------------------------------------------- flag and env agree


@pytest.mark.parametrize("prog", PROGRAMS)
def test_samples_cover_every_setting(prog: str) -> None:
    assert set(GOOD[prog]) == {s.name for s in PROGRAMS[prog][0] if s.env}


GOOD_CASES = [(prog, s) for prog, s in ALL if s.env]


@pytest.mark.parametrize(("prog", "s"), GOOD_CASES, ids=[f"{p}:{s.name}" for p, s in GOOD_CASES])
def test_flag_and_env_var_give_the_same_value(prog: str, s: Setting) -> None:
    text, value = GOOD[prog][s.name]
    assert value != s.default  # else the test could not tell the env var was read
    argv = [s.flag] if s.switch else [s.flag, text]
    by_flag = parse(prog, argv, {})
    by_env = parse(prog, [], {s.env: text})
    default = parse(prog, [], {})
    assert getattr(by_flag, s.name) == getattr(by_env, s.name) == value
    assert type(getattr(by_env, s.name)) is type(value)
    assert getattr(default, s.name) == s.default
    assert (by_flag.origin(s.name), by_env.origin(s.name), default.origin(s.name)) == (
        "flag",
        "env",
        "default",
    )


BAD_CASES = [(prog, name, text) for prog, cases in BAD.items() for name, text in cases]


@pytest.mark.parametrize(("prog", "name", "text"), BAD_CASES)
def test_bad_env_value_is_refused_naming_the_variable(capsys, prog, name, text) -> None:
    s = next(s for s in PROGRAMS[prog][0] if s.name == name)
    from_env = refusal(capsys, prog, [], {s.env: text})
    from_flag = refusal(capsys, prog, [s.flag, text], {})
    assert from_env.startswith(f"environment variable {s.env}: ")
    assert from_flag.startswith(f"argument {s.flag}: ")
    # the same type says the same thing, wherever the value came from
    assert from_env.partition(": ")[2] == from_flag.partition(": ")[2]


def test_a_switch_variable_takes_yes_or_no_only(capsys) -> None:
    assert parse("metrics-server", [], {"METRICS_DEMO": "ON"}).demo is True
    assert parse("metrics-server", [], {"METRICS_DEMO": "Off"}).demo is False
    line = refusal(capsys, "metrics-server", [], {"METRICS_DEMO": "maybe"})
    assert line.startswith("environment variable METRICS_DEMO: not a yes or no: 'maybe'")


def test_a_flag_wins_over_its_variable_which_is_then_not_read() -> None:
    config = parse("metrics-server", ["--port", "4001"], {"METRICS_PORT": "abc"})
    assert config.port == 4001


def test_an_empty_variable_counts_as_unset() -> None:
    config = parse("metrics-server", [], {"METRICS_PORT": "", "METRICS_TOKEN": ""})
    assert (config.port, config.token) == (3000, None)
    assert config.origin("port") == "default"


def test_a_secret_is_never_echoed_in_an_error(capsys) -> None:
    token = Setting("token", "a token", env="METRICS_T", parse=settings.whole(0), secret=True)
    parser = settings.build_parser([token], prog="p")
    with pytest.raises(SystemExit):
        settings.parse(parser, [token], [], {"METRICS_T": "hunter2"})
    err = capsys.readouterr().err
    assert "METRICS_T" in err and "hunter2" not in err


# --------------------------------------------------------------------------- docs


@pytest.mark.parametrize(("prog", "s"), ALL, ids=[f"{p}:{s.name}" for p, s in ALL])
def test_readme_names_every_flag_and_variable(prog: str, s: Setting) -> None:
    readme = README.read_text()
    assert s.flag in readme
    if s.env:
        assert f"`{s.env}`" in readme
