# Two commands: `make serve` runs the whole system on embedded defaults, `make test` runs every test.
# Both install what they need into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test unit bench proto lint clean

install: $(STAMP)

# torch goes first and pinned: unpinned, sentence-transformers pulls a multi-GB CUDA build.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

serve: install
	$(BIN)/ragcord serve

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -ra tests/unit

bench: install
	$(BIN)/python -m bench

proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. proto/rpc/v1/admin.proto

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .ragcord .pytest_cache
