# `make run` and `make test` each do all of their own set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIND ?= 127.0.0.1:8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: run test setup system-packages lint unit integration benchmarks constraints clean

run: setup
	$(BIN)/python manage.py demo
	$(BIN)/python manage.py serve --bind $(BIND)

test: system-packages $(STAMP)
	PYTHON=$(PYTHON) scripts/system-packages.sh test
	$(MAKE) --no-print-directory lint unit integration

setup: system-packages $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py c2pa dev-ca --keep-existing

system-packages:
	PYTHON=$(PYTHON) scripts/system-packages.sh runtime

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Cueledger needs Python 3.11 or newer; $(PYTHON) is older"; exit 1; }
	test -x $(BIN)/pip || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

# Unit tests run on SQLite with the embedded broker.
unit:
	$(BIN)/pytest --ignore=tests/integration

# Integration tests run on the PostgreSQL and broker named by TEST_DATABASE_URL and TEST_BROKER_URL, and so do the
# catalog's unit tests a second time, so that both databases are covered.
integration:
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		DATABASE_URL="$$TEST_DATABASE_URL" CELERY_BROKER_URL="$$TEST_BROKER_URL" \
			$(BIN)/pytest tests/integration tests/library tests/provenance tests/generation tests/cueledger/test_commands.py; \
	elif [ -n "$$CUELEDGER_REQUIRE_INTEGRATION" ]; then \
		echo "CUELEDGER_REQUIRE_INTEGRATION is set but TEST_DATABASE_URL is not"; exit 1; \
	else \
		echo "integration tests not run: set TEST_DATABASE_URL and TEST_BROKER_URL (see README)"; \
	fi

benchmarks: setup
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/ledger.py $(if $(TEST_DATABASE_URL),--postgres $(TEST_DATABASE_URL:/test=/postgres))
	$(BIN)/python benchmarks/similarity.py
	$(BIN)/python benchmarks/similarity_acoustic.py
	$(BIN)/python benchmarks/generation.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# Re-pin every dependency from a clean virtualenv.
constraints:
	rm -rf /tmp/cueledger-pin && $(PYTHON) -m venv /tmp/cueledger-pin
	/tmp/cueledger-pin/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	{ echo '# Pinned versions of every dependency of a clean install: `make constraints` regenerates this file.'; \
	  /tmp/cueledger-pin/bin/pip freeze --exclude-editable --disable-pip-version-check | grep -v '^-e'; } > constraints.txt
