# gatekey developer commands. `make help` lists them. `make run` and `make test` need only
# Python 3.11+ and git: they create .venv, and start embedded PostgreSQL/Redis if none answer.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := service cli tests scripts migrations bench setup.py
# Runs a command with DATABASE_URL and REDIS_URL pointing at servers that answer.
WITH_SERVICES := $(BIN)/python scripts/devservices.py run --

.DEFAULT_GOAL := help
# The targets share .venv and the services; `make test` stops at the first failure, in order.
.NOTPARALLEL:
.PHONY: help venv run test lint typecheck contracts unit integration pgbouncer test-selftest test-faults test-cluster \
	test-packaging test-matrix bench selftest soak docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv and install the project and its dev tools (once)

$(STAMP): requirements-runtime.txt requirements-test.txt requirements.txt requirements-dev.txt \
		pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 11) else \
		"gatekey needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0] + "; try: make PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements-dev.txt
	touch $@

run: venv ## Migrate, print a demo key and curl line, serve on HOST:PORT (127.0.0.1:8000)
	$(WITH_SERVICES) $(BIN)/python scripts/dev_run.py

test: lint typecheck contracts unit integration pgbouncer ## lint, typecheck, contracts, unit, integration, the database modules through PgBouncer

lint: venv ## ruff check and ruff format --check
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: venv ## mypy --strict on service, cli, tests, bench and scripts (config in pyproject.toml)
	$(BIN)/mypy

contracts: venv ## import-linter: the import layering the README states (contracts in pyproject.toml)
	$(BIN)/lint-imports --no-cache --no-logo

unit: venv ## Unit tests: no network, seconds
	$(BIN)/pytest tests/unit -q

integration: venv ## Integration tests against real PostgreSQL and Redis (not the `selftest`, `cluster` and `faults` suites)
	$(WITH_SERVICES) $(BIN)/pytest tests/integration -q

# The modules whose tests are about the database (SQL, sessions, the pool, usage flushes), run
# again through a PgBouncer of their own in transaction pooling mode (needs `pgbouncer`).
PGBOUNCER_MODULES := $(addprefix tests/integration/,test_key_service.py test_keys_api.py \
	test_bulk_keys.py test_key_directory.py test_usage_flush.py test_session_pool.py)
pgbouncer: venv ## The database-facing integration modules through a real PgBouncer (transaction pooling)
	$(WITH_SERVICES) $(BIN)/pytest $(PGBOUNCER_MODULES) -q --pgbouncer

test-faults: venv ## Minutes of load through database faults: restart, terminated backends, hang-ups
	$(WITH_SERVICES) $(BIN)/pytest tests/integration -q -m faults --durations=0

test-selftest: venv ## Real self-test runs against servers with injected faults: every check can fail (minutes)
	$(WITH_SERVICES) $(BIN)/pytest tests/integration -q -m selftest

test-cluster: venv ## Redis Cluster and Sentinel started by the tests: limits, usage, failover (minutes)
	$(WITH_SERVICES) $(BIN)/pytest tests/integration -q -m cluster

test-packaging: venv ## Slow: the wheel and the checklist's install flow, each in a fresh venv
	$(WITH_SERVICES) $(BIN)/pytest tests/packaging -q -m packaging

test-matrix: venv ## Unit suite + integration smoke on every Python 3.11-3.13 found (.venv-3.X; ARGS="--versions 3.12")
	$(WITH_SERVICES) $(BIN)/python scripts/matrix.py $(ARGS)

bench: venv ## wrk: gatekey at 1-5,000 and 100,000 cold keys vs bare FastAPI, bare ASGI, slowapi (ARGS="...")
	$(WITH_SERVICES) $(BIN)/python scripts/bench.py $(ARGS)

selftest: venv ## gatekey selftest --suite: checklist, load steps, integration suite, GO/NO-GO (ARGS="--quick" ...)
	$(WITH_SERVICES) $(BIN)/gatekey selftest --suite $(ARGS)

soak: venv ## gatekey selftest --soak 10m: one load level for 10 minutes, nothing may keep growing (ARGS="...")
	$(WITH_SERVICES) $(BIN)/gatekey selftest --only soak --soak 10m $(ARGS)

docs: venv ## Rewrite docs/cli.md from the CLI itself (tests/unit/test_docs.py checks it is current)
	$(BIN)/python scripts/cli_reference.py

clean: ## Remove .venv, .devservices (embedded servers' data) and caches
	rm -rf $(VENV) .venv-3.* .devservices .mypy_cache .ruff_cache .pytest_cache *.egg-info build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
