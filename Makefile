# The two commands the README promises: `make run` and `make test` (plus `make monitor`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install install-dev system-deps test-idp migrate monitor bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installed markers: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/faultmaven-auth migrate

## make run: the service on the embedded default (SQLite file + in-process store)
run: install
	@$(BIN)/faultmaven-auth migrate
	@echo ""
	@echo "  FaultMaven Auth on http://$(HOST):$(PORT)"
	@echo "  API docs:      http://$(HOST):$(PORT)/docs"
	@echo "  First organization (self-service sign-up):"
	@echo "    curl -s -X POST http://$(HOST):$(PORT)/api/v1/auth/register -H 'Content-Type: application/json' \\"
	@echo "      -d '{\"organization_name\": \"Acme\", \"email\": \"owner@example.com\", \"password\": \"a long passphrase\", \"full_name\": \"Ann Owner\"}'"
	@echo "  or: $(BIN)/faultmaven-auth bootstrap --help"
	@echo ""
	$(BIN)/faultmaven-auth serve --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check src tests benchmarks monitoring scripts
	$(BIN)/ruff format --check src tests benchmarks monitoring scripts
	$(BIN)/mypy

# Debian packages the suite uses for real (promtool); installs only what is missing.
system-deps:
	./scripts/install-system-deps.sh

# The OpenID provider (npm oidc-provider) the SSO tests log in through; npm ci only when needed.
test-idp:
	./scripts/install-test-idp.sh

## make test: lint, then the whole suite (embedded backend and PostgreSQL + Redis)
test: lint system-deps test-idp
	$(BIN)/pytest $(PYTEST_ARGS)

## make monitor: Prometheus + Alertmanager on 127.0.0.1 with the project's rules, scraping
## the service of `make run` ($(HOST):$(PORT)); prints the URLs, Ctrl-C stops both
monitor: system-deps
	SERVICE_ADDRESS=$(HOST):$(PORT) ./scripts/monitor.sh

## make bench: the load harness (writes benchmarks/results/load.md and the numbers of
## docs/sizing.md), the telemetry overhead benchmark and the data-scale one (pages at 1M events, /metrics cost);
## about 20 minutes on 2 cores. `make bench BENCH_ARGS=--quick` (about 3) passes --quick to all.
BENCH_PY := PYTHONPATH=src $(BIN)/python
bench: install-dev
	./scripts/install-system-deps.sh bench
	$(BIN)/pip install --quiet 'py-spy>=0.3'
	$(BENCH_PY) -m benchmarks.load.run $(BENCH_ARGS)
	$(BENCH_PY) -m benchmarks.telemetry_overhead.run $(BENCH_ARGS)
	$(BENCH_PY) benchmarks/data_scale/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis var tests/sso/idp/node_modules
