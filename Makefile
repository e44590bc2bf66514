# icetide — run `make` (or `make help`) for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
CACHE   := .cache
# Maven's local repository (`make setup M2=$(mktemp -d)` measures a cold fetch)
M2      ?= $(abspath $(CACHE))/m2
# the product's jars (as the Dockerfile), then the tests' Kafka Connect worker and its plugin.path folders
JAR_GROUPS := spark flink kafka connect connect-plugins/debezium-jdbc connect-plugins/apicurio-avro
JAR_STAMPS := $(foreach g,$(JAR_GROUPS),$(CACHE)/jars/$(g)/.stamp)
# Apicurio Registry (Confluent-compatible API), built by Quarkus from Maven Central artifacts
REGISTRY_JAR := $(CACHE)/registry/build/apicurio-registry-runner.jar
PYTEST_ARGS ?=

.PHONY: help setup test test-unit demo bench lint typecheck clean distclean

help:  ## show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(CACHE)/system.stamp $(BIN)/.stamp $(JAR_STAMPS) $(REGISTRY_JAR)  ## venv + pinned deps, JVM jars (Maven), Debian packages; a no-op when done

$(CACHE)/system.stamp: scripts/setup-system.sh
	@mkdir -p $(CACHE)
	bash scripts/setup-system.sh
	@touch $@

$(BIN)/.stamp: pyproject.toml requirements.lock
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (icetide needs Python 3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==26.3
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	$(BIN)/pip check
	$(BIN)/python scripts/check_pins.py
	@touch $@

$(CACHE)/jars/%/.stamp: jars/%/pom.xml
	@mkdir -p $(CACHE)/jars/$*
	rm -f $(CACHE)/jars/$*/*.jar
	mvn -q -B -f jars/$*/pom.xml -Dmaven.repo.local=$(M2) \
	    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(CACHE))/jars/$*
	@touch $@

$(REGISTRY_JAR): jars/registry/pom.xml $(wildcard jars/registry/src/main/java/io/icetide/registry/*.java)
	mvn -q -B -f jars/registry/pom.xml -Dmaven.repo.local=$(M2) clean package
	@touch $@

test: setup  ## run every test tier (unit, integration, e2e)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup  ## only the unit tier (no JVM, seconds)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

demo: setup  ## the main job end to end on the embedded stack
	$(BIN)/icetide demo

bench: setup  ## every benchmark at its default size (JSON on stdout; reports in docs/results/)
	$(BIN)/python bench/write_speed.py --rows 1000000
	$(BIN)/python bench/compaction.py
	ICETIDE__STACK__STATE_DIR=$(abspath .state/bench) $(BIN)/icetide batch bench --sizes 100000,500000,1000000 --table bench.vendas --json
	$(BIN)/python bench/policy_compile.py
	$(BIN)/python bench/policy_view_overhead.py
	$(BIN)/python bench/cdc_throughput.py --events 300000 --partitions 2 --consumers 1,2
	$(BIN)/python bench/cdc_latency.py --rates 2000,5000,10000 --seconds 60

lint: setup  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:  ## remove runtime state (.state)
	rm -rf .state

distclean: clean  ## also remove the venv and download caches
	rm -rf $(VENV) $(CACHE)
