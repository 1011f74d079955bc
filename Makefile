# MedChain: `make demo` runs the whole thing on this machine, `make test` checks it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTRACTS_STAMP := contracts/node_modules/.installed
CHROMIUM := /usr/bin/chromium
PACKAGES := $(wildcard portal chain training bench)

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1
export DEBIAN_FRONTEND := noninteractive

.PHONY: all deps demo soak test lint bench contracts clean static

all: deps

# torch/torchvision resolve to the machine's local wheels through pip's configured constraint.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(CONTRACTS_STAMP): contracts/package.json $(wildcard contracts/package-lock.json)
	npm ci --prefix contracts --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium for the browser tests (Playwright's own browser download fails here).
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

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

test: deps $(CHROMIUM) lint
	$(BIN)/pytest

bench: deps
	$(BIN)/python bench/run.py --out var/bench.json

contracts: $(CONTRACTS_STAMP)
	npm run --prefix contracts compile

clean:
	rm -rf var/* .pytest_cache .mypy_cache .ruff_cache .hypothesis
