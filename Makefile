# renderq: `make run` starts everything, `make test` runs the whole suite. Both set up first.
SHELL := /bin/bash
VENV := .venv/bin

export PORT ?= 8000
export HOST ?= 127.0.0.1
export RENDERQ_WORKERS ?= 2
export RENDERQ_USER ?= renderq
export RENDERQ_REDIS_PORT ?= 6390

# With no REDIS_URL given, supervisord also runs a private redis-server for renderq.
ifeq ($(origin REDIS_URL), undefined)
export REDIS_URL := redis://127.0.0.1:$(RENDERQ_REDIS_PORT)/0
export RENDERQ_LOCAL_REDIS := true
else
export RENDERQ_LOCAL_REDIS := false
endif

.PHONY: setup run test lint format bench soak

setup:
	@bash deploy/setup.sh

run: setup
	@echo "renderq: serving on http://$(HOST):$(PORT) (Ctrl-C stops everything)"
	@sudo_cmd=$$([ "$$(id -u)" -eq 0 ] || echo "sudo -E"); \
	exec $$sudo_cmd $(VENV)/supervisord -n -c deploy/supervisord.conf

test: setup lint
	$(VENV)/pytest -q

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

format: setup
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

bench: setup
	$(VENV)/python -m bench

soak: setup
	$(VENV)/python -m bench.soak
