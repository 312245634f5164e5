"""The `ragcord` command outside the core: both ways of running it, and what an operator sees when a
setting is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_an_invalid_setting_is_one_line_naming_the_variable_not_a_traceback():
    result = run(RAGCORD, "jobs", RAGCORD_WORKER_PROCESSES="many", DISCORD_TOKEN="secret-token")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: RAGCORD_WORKER_PROCESSES: Input should be a valid integer" in result.stderr
    assert "many" not in result.stderr and "secret-token" not in result.stderr


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


def test_chat_lists_its_commands_and_quits_on_end_of_input_with_a_newline():
    from tests.harness import free_port

    # No server is needed to read the commands: /help and the end of input never call the API.
    result = subprocess.run(
        [RAGCORD, "chat", "--address", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        input="/help\n",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "RAGCORD_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert result.returncode == 0, result.stderr
    assert "/clear  forget the conversation" in result.stdout
    assert "Ctrl-D or Ctrl-C  quit" in result.stdout
    assert result.stdout.endswith("\n")


def test_a_taken_worker_metrics_port_is_one_line_naming_the_setting():
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(RAGCORD, "worker", RAGCORD_WORKER_METRICS_PORT=str(port))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port} is taken" in result.stderr and "RAGCORD_WORKER_METRICS_PORT" in result.stderr
