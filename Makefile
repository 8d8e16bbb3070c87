# Everything is set up from the lock file on first use: `make serve`, `make test`, `make bench`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# `make serve` has its own environment, from the runtime lock only (no test tools).
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
STORAGE ?= ./spoolup-data

.PHONY: serve test lint typecheck pytest bench lock browser curl cluster-tools clean

$(STAMP): requirements/dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements/dev.lock
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium) for the browser tests" >&2; exit 1; fi; }

# Debian's curl: the server and framework benchmarks (and their tests) upload with curl -F.
curl:
	@command -v curl >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq curl >/dev/null; \
	  else echo "install Debian's curl (sudo apt-get install curl) for the benchmarks" >&2; exit 1; fi; }

# Debian's HAProxy and Redis for the cluster tests (tests/cluster skip, saying why, without them).
cluster-tools:
	@command -v haproxy >/dev/null && command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq haproxy redis-server >/dev/null \
	    && { systemctl disable --now haproxy redis-server >/dev/null 2>&1 || true; }; \
	  else echo "install Debian's haproxy and redis-server (sudo apt-get install haproxy redis-server) for the cluster tests" >&2; fi; }

$(SERVE_STAMP): requirements/serve.lock pyproject.toml
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv --without-pip $(SERVE_VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check --target $(SERVE_VENV)/uv uv==$(UV_VERSION)
	$(SERVE_VENV)/uv/bin/uv pip install -q --python $(SERVE_VENV)/bin/python -r requirements/serve.lock
	rm -rf $(SERVE_VENV)/uv
	touch $@

# make serve HOST=0.0.0.0 PORT=8080 STORAGE=s3://bucket/prefix (and SPOOLUP_* variables)
serve: $(SERVE_STAMP)
	$(SERVE_VENV)/bin/spoolup serve --host $(HOST) --port $(PORT) --storage $(STORAGE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser curl cluster-tools
	rm -f .coverage .coverage.*
	$(BIN)/pytest -p no:cacheprovider --cov --cov-report=term $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP) curl cluster-tools
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lock:
	$(BIN)/uv pip compile requirements/dev.in -o requirements/dev.lock --python-version 3.11 -q
	$(BIN)/uv pip compile requirements/serve.in -o requirements/serve.lock --python-version 3.11 -q \
	  --no-annotate --custom-compile-command "make lock" -c <(grep -v '^-e' requirements/dev.lock)

clean:
	rm -rf $(VENV) $(SERVE_VENV) .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.* htmlcov
