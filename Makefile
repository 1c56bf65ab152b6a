# Two set-up commands for a fresh clone (see README):
#   make demo   -> creates .venv, installs rnnkit, runs the main job (rnnkit demo)
#   make test   -> creates .venv, installs rnnkit + test tools, runs the test suite (CI)
#   make test-fast -> the same without the tests marked slow
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# demo needs rnnkit + matplotlib; tests add pytest, hypothesis and the torch==2.13.0 CPU oracle
$(BIN)/.demo-installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[plot]'
	touch $@

$(BIN)/.test-installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,plot]'
	touch $@

.PHONY: demo test test-fast browser bench fuzz
demo: $(BIN)/.demo-installed
	$(BIN)/rnnkit demo

# Headless Chromium for the HTML-page test (Debian packages; needs root, skipped tests otherwise).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: chromium not installed; the page-rendering test will be skipped"

test: $(BIN)/.test-installed browser fuzz
	$(BIN)/python -m pytest -q

# A short run of every fuzz harness (fuzz/targets.py), FUZZ_SECONDS each; a crash fails the target and
# leaves its input as fuzz-out/crash-* (save it under fuzz/regressions/NAME/). Long runs: docs/reliability.md.
FUZZ_SECONDS ?= 10
fuzz: $(BIN)/.test-installed
	@mkdir -p fuzz-out
	@for name in $$($(BIN)/python fuzz/run.py --list | cut -d: -f2); do \
	  echo "fuzz $$name ($(FUZZ_SECONDS) s)"; \
	  (cd fuzz-out && $(abspath $(BIN))/python ../fuzz/run.py $$name -max_total_time=$(FUZZ_SECONDS) > $$name.log 2>&1) \
	    || { tail -40 fuzz-out/$$name.log; exit 1; }; grep DONE fuzz-out/$$name.log; \
	done

# the fast tier for working: every test not marked slow (under a minute on 2 cores)
test-fast: $(BIN)/.test-installed
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(BIN)/.test-installed
	$(BIN)/rnnkit bench
