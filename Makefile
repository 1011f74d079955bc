# MedChain: `make demo` runs the whole thing on this machine, `make test` checks it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTRACTS_STAMP := contracts/node_modules/.installed
CHROMIUM := /usr/bin/chromium
WRK := /usr/bin/wrk
PACKAGES := $(wildcard portal chain training bench)

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1
export DEBIAN_FRONTEND := noninteractive

.PHONY: all deps demo soak test test-deep lint bench contracts clean static lock

all: deps

# Every package, transitive ones included, comes from requirements.lock with its hashes
# (torch/torchvision from the machine's local wheels); the project itself is installed
# without its dependencies and without a build environment pip would fetch unchecked.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) scripts/check-lock.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Regenerate requirements.lock after changing a dependency in pyproject.toml.
LOCK_VENV := var/lock-venv
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2)
	$(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev \
		--strip-extras --no-emit-index-url --no-emit-find-links \
		-o requirements.lock pyproject.toml

$(CONTRACTS_STAMP): contracts/package.json $(wildcard contracts/package-lock.json)
	npm ci --prefix contracts --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium for the browser tests (Playwright's own browser download fails here).
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

# Debian's wrk drives the load bench (bench/load.py).
$(WRK):
	apt-get update -qq && apt-get install -y -qq wrk

# Browser vendor files (Pyodide, the pydicom wheel, training/'s de-identification code)
# copied into portal/static/vendor/ (gitignored); cheap, so it runs every time.
STATIC_NPM_STAMP := node_modules/.installed

$(STATIC_NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static: $(STAMP) $(STATIC_NPM_STAMP)
	node scripts/build-static.mjs

deps: $(STAMP) $(CONTRACTS_STAMP) static

demo: deps
	$(BIN)/python manage.py demo

# The demo stack under beat and node traffic (var/soak/, free ports); report in var/soak.json.
SOAK_MINUTES ?= 30
soak: deps
	$(BIN)/python manage.py soak --minutes $(SOAK_MINUTES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports --no-logo

test: deps $(CHROMIUM) lint
	$(BIN)/pytest

# The same tests with ten times the examples of every property test (tests/examples.py).
test-deep: deps $(CHROMIUM) lint
	HYPOTHESIS_PROFILE=deep $(BIN)/pytest

# The load bench needs the machine's PostgreSQL and Redis (as the integration tests do);
# BENCH_ARGS=--quick shortens its runs, BENCH_ARGS="--only load" runs it alone.
bench: deps $(WRK)
	$(BIN)/python bench/run.py --out var/bench.json $(BENCH_ARGS)

contracts: $(CONTRACTS_STAMP)
	npm run --prefix contracts compile

clean:
	rm -rf var/* .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis
