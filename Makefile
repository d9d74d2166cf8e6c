# The two commands of the README. Both set up a fresh machine first (.ci/setup).
.PHONY: setup demo test lint mutation

VENV := .venv
INVOKE := $(VENV)/bin/invoke

setup:
	bash .ci/setup

# The main job, offline from conda channels: build the org channel (channels/org.yaml: its locked
# PyPI wheels converted into conda packages, plus this machine's python), validate, lock and
# render the demo baseline, build it (environment, tarball, image, smoke test), publish it to the
# local store, and build the example project's overlay on it (delta env, tarballs, overlay image).
# Without a Docker Engine (not root, or no docker.io), the image step says so and the rest is built.
demo:
	BASELINER_WITH_DOCKER=1 bash .ci/setup
	-bash .ci/docker-up && $(INVOKE) base-image
	$(INVOKE) channel
	$(INVOKE) validate
	$(INVOKE) lock --name demo
	$(INVOKE) render --name demo
	$(INVOKE) build-baseline demo
	$(INVOKE) publish demo
	cd examples/proj-nlp && ../../$(VENV)/bin/baseliner build-overlay overlay.yaml

test: setup
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check baseliner tests tasks.py bench
	$(VENV)/bin/ruff format --check baseliner tests tasks.py bench
	$(VENV)/bin/mypy

# Mutation testing of the safety-critical modules ([tool.mutmut] in pyproject.toml); not in CI.
# Survivors: `.venv/bin/mutmut results`, one of them: `.venv/bin/mutmut show NAME`. One module:
# make mutation MUTANTS='baseliner.pack*'.
mutation: setup
	rm -rf mutants
	$(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/python tests/support/mutation_scores.py $(MUTANTS)
