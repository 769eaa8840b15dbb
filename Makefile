# renderq: `make run` starts everything, `make test` runs the whole suite. Both set up first.
SHELL := /bin/bash
VENV := .venv/bin
# What the services run: renderq installed read-only by deploy/setup.sh.
SERVICE_VENV := /opt/renderq/venv/bin
# The services start as root and drop privileges; so do the tests' workers.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo "sudo -E")

export PORT ?= 8000
export HOST ?= 127.0.0.1
export RENDERQ_WORKERS ?= 2
export RENDERQ_WORKER_USER ?= renderq
export RENDERQ_RENDER_USER ?= renderq-render
export RENDERQ_REDIS_USER ?= renderq-redis
export RENDERQ_REDIS_PORT ?= 6390
export RENDERQ_REDIS_MAXMEMORY ?= 512mb
# The result links' secret, made by deploy/setup.sh; RENDERQ_SIGNING_KEY, when given, wins.
export RENDERQ_SIGNING_KEY_FILE ?= /etc/renderq/signing-key

# With no REDIS_URL or REDIS_SENTINELS given, supervisord also runs a private,
# password-protected redis-server.
ifeq ($(origin REDIS_URL)$(origin REDIS_SENTINELS), undefinedundefined)
export REDIS_URL := redis://127.0.0.1:$(RENDERQ_REDIS_PORT)/0
export RENDERQ_REDIS_PASSWORD_FILE ?= /etc/renderq/redis-password
export RENDERQ_LOCAL_REDIS := true
else
export RENDERQ_LOCAL_REDIS := false
endif

.PHONY: setup run run-front run-worker test lint format bench soak soak-failover

setup:
	@bash deploy/setup.sh

run: setup
	@echo "renderq: serving on http://$(HOST):$(PORT) (Ctrl-C stops everything)"
	@exec $(SUDO) $(SERVICE_VENV)/supervisord -n -c deploy/supervisord.conf

# Several machines: fronts and workers on hosts of their own, all on one Redis (REDIS_URL)
# or one Sentinel set (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).
run-front: setup
	@echo "renderq: front only, serving on http://$(HOST):$(PORT)"
	@exec $(SUDO) $(SERVICE_VENV)/supervisord -n -c deploy/front-host.conf

run-worker: setup
	@echo "renderq: $(RENDERQ_WORKERS) workers only"
	@exec $(SUDO) $(SERVICE_VENV)/supervisord -n -c deploy/worker-host.conf

test: setup lint
	$(SUDO) $(VENV)/pytest -q

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/lint-imports

format: setup
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

bench: setup
	$(SUDO) $(VENV)/python -m bench

soak: setup
	$(SUDO) $(VENV)/python -m bench.soak

soak-failover: setup
	$(SUDO) $(VENV)/python -m bench.soak --failover
