# crewyard — `make run` sets up and starts the platform with a demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DATA ?= .crewyard
PORT ?= 8080
# Test processes: most of the suite waits on platforms, sandboxes and containers, not on the CPU,
# so a few more processes than cores keep both cores busy. One file's tests share one process.
TEST_WORKERS ?= 3

.PHONY: setup system run test soak check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,frameworks]'
	rm -f $(VENV)/.installed-* && touch $@

system:
	bash scripts/install-system.sh

setup: system $(STAMP)

run: setup
	$(BIN)/crewyard demo --data-dir $(DATA) --port $(PORT)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# The end-to-end tests (chaos and cluster among them) ROUNDS times in a row, stopping at the first
# failure: what flakes shows up here rather than in someone's landing.
ROUNDS ?= 5
soak: setup
	@for i in $$(seq 1 $(ROUNDS)); do \
		echo "== round $$i of $(ROUNDS) ($$(date -u +%H:%M:%S), load $$(cut -d' ' -f1-3 /proc/loadavg))"; \
		$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests/e2e \
			|| { echo "== round $$i failed"; exit 1; }; \
	done; echo "== $(ROUNDS) rounds passed"

check: $(STAMP)
	$(BIN)/ruff check libs services tests examples
	$(BIN)/ruff format --check libs services tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# Figure 5 also measures the docker backend when the local engine can be set up (as root).
bench: setup
	@host=$$(bash scripts/containers.sh 2>/dev/null | sed -n 's/^DOCKER_HOST=//p' | tail -1); \
	if [ -n "$$host" ]; then export CREWYARD_DOCKER_HOST=$$host CREWYARD_BASE_IMAGE=crewyard/base:bookworm; fi; \
	$(BIN)/python -m crewyard.bench

clean:
	rm -rf $(VENV) $(DATA) build *.egg-info
