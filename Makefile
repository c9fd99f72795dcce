# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first
# (virtualenv, Rust build of hub._core, install with dev extras). Needs Python >= 3.11 and a Rust toolchain.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
RUST_SOURCES := $(shell find core_rs/src -name '*.rs') Cargo.toml core_rs/Cargo.toml
# Every built-in connector and pipeline plugin is a distribution of its own, registered on the entry-point group
# cityhub.plugins like any third-party plugin; each is installed editable beside the hub.
PLUGIN_PROJECTS := $(sort $(dir $(wildcard connectors/*/pyproject.toml plugins/*/pyproject.toml)))
PYTEST_ARGS ?=
SHELL := /bin/bash

.PHONY: install test test-rust test-python test-fast lint typecheck format demo bench clean

install: $(INSTALLED)

$(BIN)/python:
	@echo "[set-up 1/2] virtualenv in $(VENV) (a few seconds)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# pip -v shows cargo's "Compiling ..." lines as the Rust core builds: the progress of the long step.
$(INSTALLED): $(BIN)/python pyproject.toml $(RUST_SOURCES) $(addsuffix pyproject.toml,$(PLUGIN_PROJECTS))
	@echo "[set-up 2/2] dependencies and the Rust core (release build): about 4 minutes on 2 cores the first time, seconds after"
	@start=$$(date +%s); $(BIN)/pip install -v -e '.[dev]' 2>&1 | grep -E --line-buffered '^ *(Compiling|Finished|Successfully|Collecting|error|ERROR|warning: unused)' ; \
	  status=$${PIPESTATUS[0]}; [ $$status -eq 0 ] || { echo "set-up failed: run '$(BIN)/pip install -v -e .[dev]' to see why"; exit $$status; }; \
	  echo "[set-up done in $$(( $$(date +%s) - start )) s]"
	@echo "[set-up] the built-in connectors and plugins (editable, a few seconds)"
	$(BIN)/pip install --quiet --no-build-isolation --no-deps $(addprefix -e ,$(PLUGIN_PROJECTS))
	touch $@

test: test-rust test-python

# --lib: the unit tests alone reuse the dependencies the extension's release build compiled (make install/demo);
# building the examples or doc tests too wants them as object code and recompiles every one of them.
test-rust: install
	cargo test --manifest-path core_rs/Cargo.toml --release --lib

test-python: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests without those marked slow (clusters, failover, durability, the browser): minutes instead of twenty.
test-fast: test-rust
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The house checks (configured in pyproject.toml and rustfmt.toml); .ci/run runs lint and typecheck before the tests.
# clippy lints the core with its Python binding, with the venv's Python as the build's (PYO3_PYTHON), in the same
# target directory as the release build.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cargo fmt --manifest-path core_rs/Cargo.toml --check
	PYO3_PYTHON=$(abspath $(BIN)/python) cargo clippy --manifest-path core_rs/Cargo.toml --release --lib --features python -- -D warnings

typecheck: install
	$(BIN)/python -m mypy

# Rewrites files: the safe lint fixes first (they can shorten lines), then the formatters. What is left is printed
# and fails `make lint`.
format: install
	$(BIN)/ruff check --fix --exit-zero .
	$(BIN)/ruff format .
	cargo fmt --manifest-path core_rs/Cargo.toml

demo: install
	$(BIN)/cityhub demo

bench: install
	cargo build --manifest-path core_rs/Cargo.toml --release --examples  # the profiling examples still compile
	mkdir -p .benchmarks
	$(BIN)/python -m pytest benchmarks -o python_files="bench_*.py" --benchmark-only --benchmark-json=.benchmarks/latest.json -p no:cacheprovider
	$(BIN)/python benchmarks/report.py .benchmarks/latest.json BENCHMARKS.md

clean:
	rm -rf $(VENV) target .pytest_cache .benchmarks
