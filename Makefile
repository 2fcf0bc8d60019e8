# kafka-jobmanager: every developer task starts here.
#   make demo   run the main job: a local cluster (2 coordinators, 2 workers) running a sample job
#   make test   install everything needed, then lint, type-check and test against real Kafka + Redis

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LAUNCH := $(PYTHON) compose/local/launcher.py
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install deps up down status env test test-fast lint format typecheck bench demo drill clean

help:
	@echo "make demo       a local cluster (Kafka, Redis, 2 coordinators, 2 workers) running a sample job"
	@echo "make test       set up everything, lint, type-check, run the whole suite"
	@echo "make up / down  start / stop local Kafka and Redis (idempotent)"
	@echo "make lint       ruff + mypy --strict"
	@echo "make bench      benchmarks, results in docs/benchmarks.md"
	@echo "make drill      every recovery drill at full length (docs/operations.md)"

# Python >= 3.11, a virtualenv, the project and its test extra.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# The project's bytecode, compiled ahead as a wheel install does (an editable install
# leaves it to the first import, which cannot write it where PYTHONDONTWRITEBYTECODE is
# set: every `jm` process would compile ~60 modules, 0.1-0.15 s). Only what changed.
# Then the codec's generated readers compiled to C with mypyc (schemas/native.py): about
# a minute when the schemas or the generator changed, nothing otherwise; without a C
# compiler they run as Python, and CI requires them.
install: $(STAMP)
	$(BIN)/python -m compileall -q coordinator worker schemas
	$(BIN)/python -m schemas.native build $(if $(CI),--require)

# Kafka jars (Maven Central, cached outside the repo), redis-server, kcat, and chromium with
# its driver for the dashboard test (Debian's packages).
deps: install
	$(LAUNCH) resolve
	$(LAUNCH) ensure redis-server kcat chromium chromedriver

# SECURE=1: also a SASL listener (PLAIN, SCRAM-SHA-256) on 9094 with the KRaft authorizer
# (docs/security.md); the plain listener on 9092 stays as it is.
# BROKERS=3: three KRaft nodes (free ports next to 9092: 9192, 9292); topics get replication
# factor 3 and min.insync.replicas 2 (`make env` exports JM_REPLICATION_FACTOR=3).
up: deps
	$(LAUNCH) up $(if $(SECURE),--secure) $(if $(BROKERS),--brokers $(BROKERS))

down:
	$(LAUNCH) down

status:
	$(LAUNCH) status

env:
	@$(LAUNCH) env

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The README's test command; .ci/run calls exactly this. Two pytest workers (each its
# own broker and Redis when none is given): the integration tests mostly wait on
# brokers, leases and processes, so two of them share the two cores well.
PYTEST_WORKERS ?= 2
test: deps lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

test-fast: install
	$(BIN)/pytest -m "not integration"

bench: deps
	$(BIN)/python -m tests.bench.run

# Every recovery drill at full length, on the Kafka of `make up` (docs/operations.md).
drill: deps
	eval "$$($(LAUNCH) env)" && $(BIN)/jm drill all --duration 60

# Kafka + Redis (local launcher, unless KAFKA_BOOTSTRAP_SERVERS and REDIS_URL are set),
# 2 coordinators, 2 workers and the sample job compose/demo-job.yaml; Ctrl-C stops it.
# DEMO_FLAGS=--ci (or CI=true): stop once the results arrived; exit 1 on any failure.
demo: deps
	$(BIN)/python compose/local/demo.py $(DEMO_FLAGS)

clean: down
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache
