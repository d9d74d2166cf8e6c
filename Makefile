# The two commands of the README. Both set up a fresh machine first (.ci/setup).
.PHONY: setup demo test lint

VENV := .venv
INVOKE := $(VENV)/bin/invoke

setup:
	bash .ci/setup

# The main job, offline: seed the local channel from this machine's python, then validate, lock
# and render the demo baseline.
demo: setup
	$(INVOKE) seed-channel
	$(INVOKE) validate
	$(INVOKE) lock --name demo
	$(INVOKE) render --name demo

test: setup
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check baseliner tests tasks.py bench
	$(VENV)/bin/ruff format --check baseliner tests tasks.py bench
	$(VENV)/bin/mypy
