# The two commands of the README: `make run` and `make test`. Both work on a fresh clone:
# they make their own virtual environment (.venv) from uv.lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3)
VENV := .venv
TOOLS := .tools
UV_VERSION := 0.13.8
UV := $(TOOLS)/bin/uv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# `make run` defaults: the embedded service (SQLite + in-process jobs) on loopback.
RUN_ENV := FLASK_ENV=$${FLASK_ENV:-development} FLASK_HOST=$${FLASK_HOST:-127.0.0.1}
PYTEST_ARGS ?=

.PHONY: run test install lint typecheck pytest services clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes --no-deps -r deploy/uv-requirements.txt

# --compile-bytecode, and compileall for our own (editable) package: where the environment
# sets PYTHONDONTWRITEBYTECODE no .pyc is ever written, so every process (each CLI run,
# Gunicorn worker, Celery child, test subprocess) would compile every module it imports.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON) --quiet --compile-bytecode
	touch $@

install: $(VENV)/.synced
	$(BIN)/python -m compileall -q -j 0 email_service tests bench

run: install
	$(RUN_ENV) $(BIN)/email-service migrate
	$(RUN_ENV) exec $(BIN)/email-service serve

services:
	bash scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install services
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .cache
