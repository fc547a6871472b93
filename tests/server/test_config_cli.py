"""metrics-server --config and --print-config, run as a user would, and the example file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx
import pytest

from bench._common import ServerProcess, run_to_end
from metrics_protocol import settings
from metrics_protocol.configfile import ConfigFile
from metrics_server.cli import example_config
from metrics_server.settings import SETTINGS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "metrics-server.toml"
REALTIME = "/api/v1/analytics/realtime-metrics"


def test_print_config_through_the_command_line_loads_back(cli_env, tmp_path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text('interval = 2\nmax_clients = 500\ntoken_env = "READ_TOKEN"\n')
    env = {**cli_env, "METRICS_CONFIG": str(conf), "METRICS_HISTORY": "7", "READ_TOKEN": "r3ad"}
    first = run_to_end("--print-config", "--port", "4001", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "r3ad" not in first.stdout
    assert "port = 4001  # flag --port" in first.stdout
    assert "history = 7  # environment variable METRICS_HISTORY" in first.stdout
    assert f"max_clients = 500  # file {conf}, line 2" in first.stdout
    assert f'token_env = "READ_TOKEN"  # file {conf}, line 3' in first.stdout
    printed = tmp_path / "printed.toml"
    printed.write_text(first.stdout)
    env = {**cli_env, "READ_TOKEN": "r3ad"}
    second = run_to_end("--config", str(printed), "--print-config", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert tomllib.loads(second.stdout) == tomllib.loads(first.stdout)


@pytest.mark.parametrize(
    ("text", "mode", "line"),
    [
        ("port = 1\nmax_client = 5\n", 0o600, "line 2: unknown key 'max_client'"),
        ('port = "1"\n', 0o600, "line 1: port: expected a whole number, not a string"),
        ('port = 1\nhost = "x\n', 0o600, "line 2: Illegal character"),
        ('token = "hunter2"\n', 0o644, "line 1: token: a token in a file others can read"),
        ('keyfile = "k.pem"\n', 0o600, "line 1: keyfile needs --certfile"),
    ],
)
def test_a_refused_file_stops_the_server_with_one_line(cli_env, tmp_path, text, mode, line) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text(text)
    conf.chmod(mode)
    done = run_to_end("--config", str(conf), env=cli_env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"metrics-server: error: {conf}, {line}"), done.stderr
    assert len(done.stderr.splitlines()) == 1 and "hunter2" not in done.stderr


async def test_a_server_started_from_a_file_serves_its_settings(
    cli_env, tmp_path, free_port
) -> None:
    """The port, the database and the read token (from token_file) all come from the file."""
    (tmp_path / "read.token").write_text("r3ad\n")
    conf = tmp_path / "server.toml"
    conf.write_text(
        f'port = {free_port}\ndb = "data.db"\ntoken_file = "read.token"\ninterval = 3600\n'
    )
    # The paths are the file's, not the working directory's.
    with ServerProcess(free_port, "--config", str(conf), env=cli_env, cwd="/") as server:
        await server.ready()
        # A fresh connection per request: the server closes each after its HTTP answer.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        base = f"http://127.0.0.1:{free_port}"
        async with httpx.AsyncClient(base_url=base, timeout=1, limits=no_reuse) as http:
            assert (await http.get(REALTIME)).status_code == 401
            ok = await http.get(REALTIME, headers={"Authorization": "Bearer r3ad"})
            assert ok.status_code == 200
        assert (tmp_path / "data.db").exists()
        assert server.stop() == 0
    assert "r3ad" not in server.stderr


# --------------------------------------------------------------------------- the example


def test_the_example_is_current() -> None:
    assert EXAMPLE.read_text() == example_config(), (
        "regenerate it: python -c 'from metrics_server.cli import example_config; "
        'print(example_config(), end="")\' > examples/metrics-server.toml'
    )


def test_the_example_documents_every_key_and_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert tomllib.loads(text) == {}  # everything commented out: the defaults
    keys = re.findall(r"^#([a-z_]+) = ", text, flags=re.M)
    for s in SETTINGS:
        if s.in_file:
            assert (f"{s.name}_file" if s.secret else s.name) in keys, s.name
            assert f"[{s.env}]" in text
    uncommented = tmp_path / "all.toml"
    uncommented.write_text(re.sub(r"^#(?=[a-z_]+ = )", "", text, flags=re.M))
    uncommented.chmod(0o600)
    file = ConfigFile.read(str(uncommented))
    assert set(file.data) == set(keys)
    values = settings.file_values(file, SETTINGS, {})
    assert set(values) == {s.name for s in SETTINGS if s.in_file}
