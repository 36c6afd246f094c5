# natftp: setup, tests, lint. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# rebuilt when pyproject.toml changes
VENV_STAMP := $(VENV)/.natftp-installed
PYTEST_ARGS ?=

.PHONY: all venv system serve test lint bench

all: test

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

# Debian packages, unpacked ProFTPD/Pure-FTPd, the vsftpd test user (root; fast when done)
system:
	bash scripts/setup-system.sh

# natftp serve on its embedded default ([::]:2121, current directory, printed credentials).
# A first try sends nothing to the router: public-address discovery (the default of a bare
# `natftp serve` beyond loopback) is opt-in here with SERVE_ARGS='--masquerade auto'.
# natftp refuses to serve beyond loopback as root (docs/security.md); this developer
# target, run as root, says so explicitly with --allow-root (a deployment sets run_as).
SERVE_ARGS ?= --masquerade off
SERVE_ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)
serve: venv
	$(VENV)/bin/natftp serve $(SERVE_ARGS) $(SERVE_ROOT_ARGS)

test: system venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# ruff, mypy --strict on the pure and shared layers, and the layering contract
# (.importlinter: which package may import which; docs/HACKING.md draws it)
lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy --strict src/natftp/proto src/natftp/nat src/natftp/ftpio
	$(VENV)/bin/lint-imports

# benchmarks are never part of `make test`: peers from Debian (system) and PyPI (the bench
# extra: pyftpdlib, aioftp, py-spy, pyinstrument); BENCH_ARGS=--quick for a short run
BENCH_STAMP := $(VENV)/.natftp-bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml $(VENV_STAMP)
	$(VENV)/bin/pip install --disable-pip-version-check -q -e '.[test,bench]'
	touch $@

bench: system venv $(BENCH_STAMP)
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)
