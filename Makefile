# Two set-up commands for a fresh clone (see README):
#   make demo   -> creates .venv, installs rnnkit, runs the main job (rnnkit demo)
#   make test   -> creates .venv, installs rnnkit + test tools, runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.rnnkit-installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: demo test browser bench
demo: $(BIN)/.rnnkit-installed
	$(BIN)/rnnkit demo

# Headless Chromium for the HTML-page test (Debian packages; needs root, skipped tests otherwise).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: chromium not installed; the page-rendering test will be skipped"

test: $(BIN)/.rnnkit-installed browser
	$(BIN)/python -m pytest -q

bench: $(BIN)/.rnnkit-installed
	$(BIN)/rnnkit bench
