# taskgate: two commands on a fresh machine -> `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile 2>/dev/null | sha1sum | cut -c1-12)
# sslyze, the OpenAPI validator and client generator in an environment of their own (they
# pin older cryptography, typer and httpx than the project's)
TOOLS  ?= .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cat pyproject.toml Makefile 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: install run test lint unit integration bench clean

install: $(STAMP) $(TOOLS_STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taskgate needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sentry,flower]'
	@rm -f $(VENV)/.installed-*
	@touch $@

$(TOOLS_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet 'sslyze>=6.3.1' 'openapi-python-client>=0.29.1' 'openapi-spec-validator>=0.7.1'
	@rm -f $(TOOLS)/.installed-*
	@touch $@

## run: install, then start the whole local stack (Ctrl-C stops it)
run: install
	$(BIN)/taskgate up

## test: install, lint, then every test (unit + integration against real servers).
## Coverage: the floor for the whole tree is lower because the gateway and workers also run
## as real subprocesses in integration tests (not measured); security/ must stay >= 95 %.
test: install lint
	$(BIN)/pytest -m "not bench" --cov --cov-report=term:skip-covered --cov-fail-under=70 -p no:cacheprovider
	$(BIN)/coverage report --include='security/*' --fail-under=95

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -p no:cacheprovider

integration: install
	$(BIN)/pytest -m integration -p no:cacheprovider

## bench: benchmarks against real servers; prints a table and writes <state-dir>/bench.json.
## The load comes from wrk (installed with apt-get when missing and possible); without it
## the bench falls back to its Python load generator, which takes CPU from the servers.
bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "wrk not found: installing it with apt-get"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq wrk; else sudo apt-get install -y -qq wrk; fi \
	  || echo "could not install wrk: using the Python load generator"; }
	$(BIN)/pytest tests/bench -m bench -s -p no:cacheprovider

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
