"""ServerConfig against the settings table, field for field.

ServerConfig stays hand-written (the embedding API: tests, benches and the monitor's --demo
build it by keyword, and type checkers see its fields); these tests keep it true to the table.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest

from metrics_protocol import settings
from metrics_server.app import ServerConfig
from metrics_server.cli import build_parser, server_config
from metrics_server.hub import Limits
from metrics_server.settings import SETTINGS

#: ServerConfig fields that are wiring, not settings: no flag sets them.
INTERNAL = {"ping_interval", "max_buffer", "limits", "shutdown_grace"}
#: Settings of the command line itself: which file to read, what to do instead of serving.
COMMAND_LINE = {"config", "print_config"}
#: Settings that land somewhere other than the field of their name.
ELSEWHERE = {
    "max_message_size": lambda c: c.limits.max_message,
    "max_batch_size": lambda c: c.limits.max_batch,
    "rate_limit": lambda c: c.limits.rate,
    "origins": lambda c: ",".join(c.origins) if c.origins else None,
}
#: A value of each setting that is not its default.
OTHER = {
    "host": "0.0.0.0",
    "port": "4001",
    "db": "/srv/other.db",
    "store": "postgresql://metrics@db.example:5432/metrics",
    "broker": "redis://redis.example:6379/0",
    "interval": "0.5",
    "tz": "Europe/Paris",
    "history": "7",
    "push_interval": "0",
    "retention": "30",
    "demo": "1",
    "token": "r3ad",
    "ingest_token": "wr1te",
    "origins": "https://a.example,https://b.example",
    "certfile": "/etc/x/cert.pem",
    "keyfile": "/etc/x/key.pem",
    "max_clients": "5",
    "max_message_size": "1024",
    "max_batch_size": "4096",
    "rate_limit": "2.5",
    "log_format": "json",
    "log_level": "warning",
}


def config_from_env(environ: dict[str, str]) -> ServerConfig:
    return server_config(settings.parse(build_parser(), SETTINGS, [], environ))


def test_every_field_is_a_setting_or_wiring() -> None:
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    names = {s.name for s in SETTINGS}
    assert fields - INTERNAL == names - set(ELSEWHERE) - COMMAND_LINE | {"origins"}
    assert set(OTHER) == names - COMMAND_LINE


def test_defaults_agree() -> None:
    assert config_from_env({}) == ServerConfig()
    defaults = {s.name: s.default for s in SETTINGS}
    assert Limits().max_message == defaults["max_message_size"]
    assert Limits().max_batch == defaults["max_batch_size"]
    assert (Limits().rate, Limits().burst) == (defaults["rate_limit"], 2 * defaults["rate_limit"])


def test_field_types_agree() -> None:
    hints = typing.get_type_hints(ServerConfig)
    for s in SETTINGS:
        if s.name not in ELSEWHERE and s.name not in COMMAND_LINE:
            assert isinstance(s.from_env(OTHER[s.name]), hints[s.name]), s.name
            assert isinstance(s.default, hints[s.name]), s.name


@pytest.mark.parametrize(
    "s", [s for s in SETTINGS if s.name not in COMMAND_LINE], ids=lambda s: s.name
)
def test_every_env_var_reaches_the_config(s: settings.Setting) -> None:
    config = config_from_env({s.env: OTHER[s.name]})
    get = ELSEWHERE.get(s.name, lambda c: getattr(c, s.name))
    assert get(config) == s.from_env(OTHER[s.name]) != get(ServerConfig())
    moved = {
        f.name
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(ServerConfig(), f.name)
    }
    limits = ("max_message_size", "max_batch_size", "rate_limit")
    expected = {"limits"} if s.name in limits else {s.name}
    if s.name == "demo":  # with its own temporary database
        expected.add("db")
    assert moved == expected
