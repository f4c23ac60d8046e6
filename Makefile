# opsportal: `make run` sets everything up and starts the portal; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests run in parallel (pytest-xdist): JOBS workers (more than cores: most tests wait on sockets and processes).
JOBS ?= 4
PYTEST := $(VENV)/bin/pytest -n $(JOBS) --dist worksteal
# The unit tier: everything but the tests that start processes, inject faults or drive a browser (tests/tiers.py).
UNIT := not system and not faults and not browser

.PHONY: run setup test test-fast test-faults lint format clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.env:
	@umask 077; printf 'SECRET_KEY=%s\nDEBUG=false\nALLOWED_HOSTS=localhost,127.0.0.1\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env
	@echo "wrote .env with a generated SECRET_KEY"

setup: $(VENV)/.installed .env
	$(PY) manage.py quickstart

# The embedded default: SQLite, the ORM broker, one web server and one qcluster.
run: setup
	@echo "opsportal on http://$(HOST):$(PORT)/  (Ctrl-C stops both processes)"
	@# SIGTERM to qcluster's main process only: signalling its whole group leaves its main process hung.
	@$(PY) manage.py qcluster & qpid=$$!; \
		trap 'kill -TERM $$qpid 2>/dev/null; wait $$qpid' EXIT; \
		$(VENV)/bin/gunicorn opsportal.wsgi -c gunicorn.conf.py -b $(HOST):$(PORT)

# The whole suite on the configured database (DATABASE_URL; SQLite by default). PYTEST_ARGS adds pytest options,
# e.g. PYTEST_ARGS=--db-tests=only (only the tests that use the database: CI's PostgreSQL leg).
test: $(VENV)/.installed
	$(PYTEST) $(PYTEST_ARGS)

# The unit tier, for the edit loop (under 2 minutes).
test-fast: $(VENV)/.installed
	$(PYTEST) -m "$(UNIT)" $(PYTEST_ARGS)

test-faults: $(VENV)/.installed
	$(PYTEST) -m faults $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
