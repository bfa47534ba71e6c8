# aseptic_cell developer commands. Everything runs in the project venv (.venv), which
# `make venv` creates from the machine's python3 and keeps in sync (content-hash stamps:
# a no-change run skips pip and cmake).
#
#   make test      set up (if needed), run the quality gates (ruff, mypy), then the test suite (pytest -n 2)
#   make lint      the quality gates alone: ruff check and mypy (strict on the ROS-free core)
#   make run       set up (if needed) and start the cell: .venv/bin/cellctl run
#   make bench     run each benchmarks/*.py
#   make venv      create/refresh .venv (system packages, pinned deps, pip install -e .)
#   make interfaces  build ros2_ws/src/cell_interfaces into .venv
#   make clean     remove the venv and build outputs
#
# Variables: PYTEST_ARGS="-k foo -x", JOBS=2 (pytest-xdist workers; JOBS=0 for no xdist),
#            RUN_ARGS="..." (extra arguments to `cellctl run`).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV ?= .venv
PYTHON ?= python3
JOBS ?= 2
PYTEST_ARGS ?=
RUN_ARGS ?=
PY := $(VENV)/bin/python

export VENV PYTHON
# Never leak another venv / a sourced ROS installation into ours (the ROS wheels' bootstrapper
# re-execs Python with its own LD_LIBRARY_PATH; a foreign marker or prefix breaks it).
unexport _ROS_WHEELS_BOOTSTRAP_COMPLETE PYTHONPATH PYTHONHOME AMENT_PREFIX_PATH CMAKE_PREFIX_PATH VIRTUAL_ENV

# ROS settings for everything started from make: loopback-only discovery, and the venv
# as the ament prefix (ament_index lookups: share/aseptic_cell, cell_interfaces, ...).
ROS_ENV := ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST AMENT_PREFIX_PATH=$(abspath $(VENV))

.PHONY: all venv system-deps interfaces lint test run bench clean

all: test

system-deps:
	@scripts/ensure_system_deps.sh

venv: system-deps
	@scripts/ensure_venv.sh
	@scripts/ensure_keys.sh

interfaces: venv
	@scripts/build_interfaces.sh

lint: venv
	@echo "ruff check"; $(VENV)/bin/ruff check --no-cache .
	@echo "mypy (pyproject [tool.mypy])"; $(VENV)/bin/mypy

test: venv interfaces lint
	@logdir=$$(mktemp -d "$${TMPDIR:-/tmp}/aseptic_cell-roslog.XXXXXX"); \
	rc=0; \
	env $(ROS_ENV) ROS_LOG_DIR="$$logdir" ROS_PYTHON_CHECK_FIELDS=1 \
	  $(PY) -m pytest -q $(if $(filter-out 0,$(JOBS)),-n $(JOBS) --dist loadscope --no-loadscope-reorder) $(PYTEST_ARGS) || rc=$$?; \
	rm -rf "$$logdir"; \
	exit $$rc

run: venv interfaces
	env $(ROS_ENV) $(VENV)/bin/cellctl run $(RUN_ARGS)

bench: venv interfaces
	@shopt -s nullglob; files=(benchmarks/*.py); \
	if (( $${#files[@]} == 0 )); then echo "no benchmarks/*.py yet"; fi; \
	for f in "$${files[@]}"; do \
	  echo "=== $$f"; \
	  env $(ROS_ENV) ROS_LOG_DIR="$${ROS_LOG_DIR:-$$HOME/.ros/log}" $(PY) "$$f"; \
	done

clean:
	rm -rf $(VENV) build dist *.egg-info ros2_ws/build ros2_ws/install ros2_ws/log
	find . -path ./.git -prune -o \( -name __pycache__ -o -name .pytest_cache -o -name .hypothesis \) -type d -prune -exec rm -rf {} +
	find aseptic_cell -name '*.so' -delete
