"""The `ragcord` command outside the core: both ways of running it, and what an operator sees when a
setting is wrong, a port is taken or no server answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
RAGCORD = str(Path(sys.executable).parent / "ragcord")


def run(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env}
    )


def test_the_console_script_and_python_m_cli_print_the_same_help():
    script = run(RAGCORD, "--help")
    module = run(sys.executable, "-m", "cli", "--help")
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout
    assert script.stdout.startswith("usage: ragcord [-h]")
    for command in ("serve", "rpc", "worker", "bot", "crawl", "watch", "jobs", "ask", "chat", "store", "kbs"):
        assert command in script.stdout


def test_ask_help_shows_its_options():
    result = run(RAGCORD, "ask", "--help")
    assert result.returncode == 0
    for option in ("question", "--kb", "--conversation ID", "--address"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RAGCORD_WORKER_PROCESSES", "many", "Input should be a valid integer"),
        ("RAGCORD_LOG_LEVEL", "loud", "not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("RAGCORD_METRICS_ADDRESS", "nowhere", "must be host:port with a port from 0 to 65535"),
        ("RAGCORD_GRPC_ADDRESS", "127.0.0.1:99999", "must be host:port with a port from 0 to 65535"),
        ("RAGCORD_GRPC_ADDRESS", "::1:50051", "(IPv6 in brackets), e.g. 127.0.0.1:50051"),
        ("RAGCORD_REDIS_URL", "localhost:6379", "must be a URL starting redis://, rediss:// or unix://"),
        ("RAGCORD_BROKER_URL", "rabbit:5672", "must be a URL starting amqp://, amqps://, redis://"),
        ("RAGCORD_WEAVIATE_URL", "weaviate:8080", "must be a URL starting http:// or https://"),
        ("OPENAI_BASE_URL", "localhost:11434/v1", "must be a URL starting http:// or https://"),
        ("RAGCORD_DISCORD_API_BASE_URL", "discord.example/api", "must be a URL starting http:// or https://"),
        (
            "RAGCORD_DISCORD_GATEWAY_URL",
            "https://gateway.discord.gg",
            "must be a URL starting ws:// or wss://",
        ),
    ],
)
def test_an_invalid_setting_is_one_line_naming_the_variable_not_a_traceback(variable, value, message):
    result = run(RAGCORD, "jobs", **{variable: value}, DISCORD_TOKEN="secret-token")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # one line, however long, into a pipe
    assert line.startswith(f"error: {variable}: ") and message in line, line
    assert value not in line and "secret-token" not in line


def test_a_url_setting_refused_never_shows_its_password():
    result = run(RAGCORD, "jobs", RAGCORD_REDIS_URL="redis//:hunter2-secret@127.0.0.1:6379/0")
    assert result.returncode == 2
    assert "error: RAGCORD_REDIS_URL: must be a URL starting redis://" in result.stderr
    assert "hunter2" not in result.stderr


def test_addresses_urls_and_log_levels_are_read_as_operators_write_them():
    from ragcord.settings import Settings

    settings = Settings(
        _env_file=None,
        log_level="debug",
        grpc_address="[::1]:50051",
        metrics_address="",
        redis_url="unix:///run/redis.sock",
        broker_url="amqp://guest:guest@127.0.0.1:5672/",
        weaviate_url="http://weaviate:8080",
        openai_base_url="http://ollama:11434/v1",
        discord_api_base_url="",
        discord_gateway_url="ws://127.0.0.1:9/gateway",
    )
    assert settings.log_level == "DEBUG" and settings.grpc_host == "::1"
    assert settings.metrics_address == "" and settings.discord_api_base_url is None
    compose = Settings(_env_file=None, grpc_address="0.0.0.0:50051", metrics_address=" localhost:0 ")
    assert (compose.grpc_host, compose.metrics_address) == ("0.0.0.0", "localhost:0")


def test_store_copy_refuses_the_same_store_on_both_sides(capsys):
    assert main(["store", "copy", "--from", "lancedb", "--to", "lancedb"]) == 2
    assert "--from and --to name the same store" in capsys.readouterr().err


def test_version():
    result = run(RAGCORD, "--version")
    assert result.returncode == 0 and result.stdout.startswith("ragcord 0.")


def test_guild_ids_are_read_as_people_write_them(monkeypatch):
    from ragcord.settings import Settings

    for written, ids in [
        ("1577198230565814275", [1577198230565814275]),
        ("1577198230565814275, 42", [1577198230565814275, 42]),
        ("[1577198230565814275,42]", [1577198230565814275, 42]),
        ("", []),
    ]:
        monkeypatch.setenv("RAGCORD_DISCORD_GUILD_IDS", written)
        assert Settings(_env_file=None).discord_guild_ids == ids, written


def test_a_bad_guild_id_is_one_line_naming_the_variable():
    result = run(RAGCORD, "jobs", RAGCORD_DISCORD_GUILD_IDS="12,abc")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: RAGCORD_DISCORD_GUILD_IDS:" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["jobs"],
        ["ask", "How do I rotate the secret key?"],
        ["chat"],
        ["crawl", "https://docs.example.com/"],
        ["sources"],
        ["kbs"],
        ["cancel", "0123456789abcdef"],
    ],
    ids=lambda command: command[0],
)
def test_with_no_server_a_command_says_in_one_line_how_to_start_one(command):
    from tests.harness import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = run(RAGCORD, *command, RAGCORD_GRPC_ADDRESS=address)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: no ragcord server answers on {address} (RAGCORD_GRPC_ADDRESS): "
        "start it with `make serve` or `ragcord serve`"
    ]
    assert result.stdout == ""


def test_with_no_server_at_address_the_message_names_the_option():
    from tests.harness import free_port

    address = f"127.0.0.1:{free_port()}"
    result = run(RAGCORD, "jobs", "--address", address)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: no ragcord server answers on {address} (--address): "
        "start it with `make serve` or `ragcord serve`"
    ]


def test_a_taken_worker_metrics_port_is_one_line_naming_the_setting():
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(RAGCORD, "worker", RAGCORD_WORKER_METRICS_PORT=str(port))
    assert result.returncode == 1
    # Into a pipe or a log (`make serve > log 2>&1`) the message stays one line, however long.
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the workers' metrics port ")
    assert f"127.0.0.1:{port} is taken" in line and line.endswith(
        "set RAGCORD_WORKER_METRICS_PORT to a free port, or 0 to turn it off"
    )


def test_a_worker_metrics_host_of_no_machine_is_one_line_naming_the_setting():
    result = run(RAGCORD, "worker", RAGCORD_WORKER_METRICS_HOST="no-such-host.invalid")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the workers' metrics cannot listen on no-such-host.invalid:9191 (")
    assert "set RAGCORD_WORKER_METRICS_HOST to an address of this machine" in line
