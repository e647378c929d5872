# Two entry points: `make quickstart` (the whole loop on the embedded model) and `make test`.
# Each creates .venv and installs what it needs. The first install compiles llama.cpp
# (llama-cpp-python): about 5–10 minutes on 2 cores; pip caches the wheel afterwards.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test lint bench clean promtool

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Ratchet needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing Ratchet and its dependencies (the first time compiles llama.cpp: several minutes)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# promtool (Debian package `prometheus`) runs the alert-rule tests of deploy/prometheus/. Installed once;
# when it cannot be installed, those tests are skipped with a message.
APT := $(if $(filter 0,$(shell id -u)),,sudo )env DEBIAN_FRONTEND=noninteractive apt-get

promtool:
	@command -v promtool >/dev/null 2>&1 \
		|| $(APT) install -y -q --no-install-recommends prometheus >/dev/null \
		|| { $(APT) update -q >/dev/null && $(APT) install -y -q --no-install-recommends prometheus >/dev/null; } \
		|| echo "warning: could not install promtool (apt-get install prometheus): Prometheus rule tests will be skipped"

quickstart: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/quickstart.sh

test: $(STAMP) promtool
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/embedded_lm.py

clean:
	rm -rf $(VENV) .quickstart .pytest_cache .ruff_cache
