# Passerelle: local commands. `make` (or `make help`) lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY = $(VENV)/bin/python
STAMP := $(VENV)/.installed

ROLE ?=
SUB ?=
PARTNER ?=
ARGS ?=

.PHONY: help venv setup run test keys token bench audit kafka-fetch clean

help: ## list the targets
	@echo "Passerelle: make <target>"
	@echo
	@echo "  setup        create .venv (Python 3.11) and pip install -e '.[dev]' (again when pyproject.toml changes)"
	@echo "  run          the dev keys (outside the repo), Kafka + the services on SQLite under var/, seeded, the"
	@echo "               identity provider and the console (http://127.0.0.1:8000);"
	@echo "               foreground, Ctrl-C stops everything"
	@echo "  test         PostgreSQL + a clean test Kafka (127.0.0.1:19092) + the dev keys, then pytest; ARGS='...'"
	@echo "  keys         make the missing development keys and print where they are (python -m shared.cli keys)"
	@echo "  token        a bearer token: make token ROLE=<role> [SUB=<user id>] [PARTNER=<partner id>]"
	@echo "  bench        the benchmarks (python -m bench) with the test infrastructure; ARGS='...' go to bench"
	@echo "  audit        replay every topic from Kafka and verify it (python -m services.audit.cli); ARGS='...'"
	@echo "  kafka-fetch  fetch the Kafka jars from Maven Central into \$${PASSERELLE_CACHE:-~/.cache/passerelle}"
	@echo "  clean        remove var/ (data, logs, Kafka data); keeps the venv, the jar cache and the dev keys"
	@echo
	@echo "  Addresses: console http://127.0.0.1:8000 (demo accounts, password demo), identity provider :8010,"
	@echo "             intake :8001, partners :8002, funding :8003, followup :8004, audit :8005, Kafka :9092"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

setup: $(STAMP)

run: setup
	exec $(PY) -m deploy.run

test: setup
	deploy/test.sh $(ARGS)

bench: setup
	deploy/test.sh --bench $(ARGS)

keys: setup
	@$(PY) -m shared.cli keys

token: setup
	@test -n "$(ROLE)" || { echo "usage: make token ROLE=<role> [SUB=<user id>] [PARTNER=<partner id>]" >&2; exit 2; }
	@$(PY) -m shared.cli token --role $(ROLE) $(if $(SUB),--sub $(SUB)) $(if $(PARTNER),--partner $(PARTNER))

audit: setup
	$(PY) -m services.audit.cli $(ARGS)

kafka-fetch:
	deploy/kafka.sh fetch

clean:
	@if [ -f var/kafka/kafka.pid ]; then deploy/kafka.sh stop; fi
	@if [ -f var/test-kafka/kafka.pid ]; then KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 KAFKA_DATA_DIR=$(CURDIR)/var/test-kafka deploy/kafka.sh stop; fi
	@if [ -f var/test-kafka-secured/kafka.pid ]; then KAFKA_SECURITY=sasl KAFKA_PORT=59092 KAFKA_CONTROLLER_PORT=59093 KAFKA_DATA_DIR=$(CURDIR)/var/test-kafka-secured deploy/kafka.sh stop; fi
	@if [ -f var/postgres.started-by-us ]; then deploy/postgres.sh stop; fi
	rm -rf var
