# Two entry points for a fresh machine: `make up` runs the whole system, `make test` runs
# the whole test suite. Both create the virtualenv and install what they need, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: up test venv lint

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/hisho up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/hisho stack exec -- $(VENV)/bin/pytest $(PYTEST_ARGS)
