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

.PHONY: install test test-rust test-python demo bench clean

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(INSTALLED): $(BIN)/python pyproject.toml $(RUST_SOURCES) $(addsuffix pyproject.toml,$(PLUGIN_PROJECTS))
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-build-isolation --no-deps $(addprefix -e ,$(PLUGIN_PROJECTS))
	touch $@

test: test-rust test-python

test-rust:
	cargo test --manifest-path core_rs/Cargo.toml --release

test-python: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/cityhub demo

bench: install
	mkdir -p .benchmarks
	$(BIN)/python -m pytest benchmarks -o python_files="bench_*.py" --benchmark-only --benchmark-json=.benchmarks/latest.json -p no:cacheprovider
	$(BIN)/python benchmarks/report.py .benchmarks/latest.json BENCHMARKS.md

clean:
	rm -rf $(VENV) target .pytest_cache .benchmarks
