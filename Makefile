# Two commands: `make serve` runs the whole system on embedded defaults, `make test` runs every test.
# Both install what they need into .venv first. `make lock` regenerates requirements/*.lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check
REQ := requirements
# The lock tool (uv, pinned with hashes in requirements/tools.lock) lives in its own venv, so locking works
# even when .venv cannot be installed from a stale lock.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# Where the CPU torch wheel (torch==2.13.0+cpu, pinned with its hash in the locks) comes from: a directory of
# wheels (these machines keep it in /opt/wheels and their pip config reads it), else PyTorch's CPU index.
# The hashes decide which file is accepted, so the extra index cannot substitute any other package or build.
TORCH_FIND_LINKS ?= /opt/wheels
TORCH_INDEX_URL ?= $(if $(wildcard $(TORCH_FIND_LINKS)/torch-2.13.0+cpu-*.whl),,https://download.pytorch.org/whl/cpu)
COMPILE = UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile --quiet --generate-hashes --python-version 3.11

.PHONY: install lock serve demo test unit typecheck bench proto lint clean

install: $(STAMP)

# Every package comes from the lock, exactly, hash-checked and without resolving (--no-deps); pip check then
# proves the set (and the project's own requirements) consistent. Only the project itself is installed unhashed.
$(STAMP): $(REQ)/dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps --find-links $(TORCH_FIND_LINKS) \
	  $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -r $(REQ)/dev.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $(STAMP)

$(UV): $(REQ)/tools.lock
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r $(REQ)/tools.lock
	touch $(UV)

# Runtime first; dev is compiled against it (-c runtime.lock in dev.in) so shared packages keep one version.
# Existing pins are kept unless a requirement forces a change; `make lock UPGRADE=--upgrade` moves everything.
lock: $(UV)
	$(COMPILE) $(UPGRADE) --find-links $(TORCH_FIND_LINKS) pyproject.toml $(REQ)/runtime.in -o $(REQ)/runtime.lock
	$(COMPILE) $(UPGRADE) --find-links $(TORCH_FIND_LINKS) pyproject.toml $(REQ)/runtime.in $(REQ)/dev.in \
	  -o $(REQ)/dev.lock
	$(COMPILE) $(UPGRADE) --universal $(REQ)/tools.in -o $(REQ)/tools.lock

serve: install
	$(BIN)/ragcord serve

# With `make serve` running in another terminal: crawl a bundled sample docs site into knowledge base `demo`
# (through a short-lived server of its own that may crawl loopback), then print what to ask.
demo: install
	$(BIN)/ragcord demo

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -ra tests/unit

# mypy --strict over our packages (pyproject [tool.mypy]); also part of `test`.
typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. proto/rpc/v1/admin.proto

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(TOOLS) .ragcord .pytest_cache
