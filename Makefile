# Two commands: `make serve` runs the whole system on embedded defaults, `make test` runs every test.
# Both install what they need into .venv first. `make lock` regenerates requirements/*.lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed
REQ := requirements
# The lock tool (uv, pinned with hashes in requirements/tools.lock) lives in its own venv, so locking works
# even when .venv cannot be installed from a stale lock.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
COMPILE = UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile --quiet --generate-hashes --python-version 3.11

.PHONY: install install-dev lock serve demo test unit typecheck bench proto lint clean

# What ragcord needs to run (`make serve`): the runtime lock. Tests, linters and benchmarks add the dev lock.
install: $(STAMP)
install-dev: $(DEV_STAMP)

# Every package comes from the lock, exactly, hash-checked and without resolving; `uv pip sync` also removes
# what the lock no longer lists (an old .venv sheds torch). uv installs in seconds where pip took minutes.
# Only the project itself is installed unhashed (editable); `uv pip check` proves the whole set consistent.
SYNC = $(UV) pip sync --quiet --python $(BIN)/python --require-hashes
EDITABLE = $(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
$(STAMP): $(UV) $(REQ)/runtime.lock pyproject.toml
	@echo "installing ragcord's runtime into $(VENV)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(SYNC) $(REQ)/runtime.lock
	$(EDITABLE)
	$(UV) pip check --quiet --python $(BIN)/python
	rm -f $(DEV_STAMP)
	touch $(STAMP)

# The dev lock holds the runtime's exact versions plus the tools (compiled with -c runtime.lock).
$(DEV_STAMP): $(STAMP) $(REQ)/dev.lock
	@echo "installing the test and benchmark tools into $(VENV)"
	$(SYNC) $(REQ)/dev.lock
	$(EDITABLE)
	$(UV) pip check --quiet --python $(BIN)/python
	touch $(DEV_STAMP)

$(UV): $(REQ)/tools.lock
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r $(REQ)/tools.lock
	touch $(UV)

# Runtime first; dev is compiled against it (-c runtime.lock in dev.in) so shared packages keep one version.
# Existing pins are kept unless a requirement forces a change; `make lock UPGRADE=--upgrade` moves everything.
lock: $(UV)
	$(COMPILE) $(UPGRADE) pyproject.toml $(REQ)/runtime.in -o $(REQ)/runtime.lock
	$(COMPILE) $(UPGRADE) pyproject.toml $(REQ)/runtime.in $(REQ)/dev.in \
	  -o $(REQ)/dev.lock
	$(COMPILE) $(UPGRADE) --universal $(REQ)/tools.in -o $(REQ)/tools.lock

serve: install
	$(BIN)/ragcord serve

# With `make serve` running in another terminal: crawl a bundled sample docs site into knowledge base `demo`
# (through a short-lived server of its own that may crawl loopback), then print what to ask.
demo: install
	$(BIN)/ragcord demo

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

unit: install-dev
	$(BIN)/python -m pytest -ra tests/unit

# mypy --strict over our packages (pyproject [tool.mypy]); also part of `test`.
typecheck: install-dev
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python -m bench

proto: install-dev
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. proto/rpc/v1/admin.proto

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(TOOLS) .ragcord .pytest_cache
