# Two entry points: `make quickstart` (the whole loop on the embedded model) and `make test`.
# Each creates .venv and installs what it needs. The first install compiles llama.cpp
# (llama-cpp-python): about 5–10 minutes on 2 cores, once per machine and CPU variant.
#
# LLAMA_CPU=portable (default) builds llama.cpp for any x86-64-v3 CPU (AVX2, no AVX-512, no AMX);
# LLAMA_CPU=native builds it for this CPU only (`-march=native`). Why, and the speed of each:
# scripts/llama_wheel.sh and docs/benchmarks.md. The wheel is kept in ~/.cache/ratchet/wheels/.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
LLAMA_CPU ?= portable
LLAMA_CPP_VERSION := 0.3.36
STAMP     := $(VENV)/.installed-$(LLAMA_CPU)

.PHONY: quickstart test lint bench clean system-packages wheel-check

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Ratchet needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml scripts/llama_wheel.sh | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing Ratchet and its dependencies (the first time compiles llama.cpp: several minutes)"
	wheels=$$(PYTHON=$(BIN)/python LLAMA_CPP_VERSION=$(LLAMA_CPP_VERSION) bash scripts/llama_wheel.sh $(LLAMA_CPU)) \
		&& $(BIN)/python -m pip install --quiet --force-reinstall --no-deps --only-binary llama-cpp-python \
			--find-links "$$wheels" "llama-cpp-python==$(LLAMA_CPP_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed*
	touch $(STAMP)

# Debian packages the tests use, installed once: promtool (package prometheus) runs the alert-rule
# tests of deploy/prometheus/; chromium is the browser the console tests drive (Playwright, no download);
# qemu-user runs the llama.cpp build on emulated older CPUs
# (tests/integration/test_portable_build.py). When they cannot be installed those tests are skipped.
APT  := $(if $(filter 0,$(shell id -u)),,sudo )env DEBIAN_FRONTEND=noninteractive apt-get
DEBS  = $(if $(shell command -v promtool),,prometheus) \
        $(if $(shell command -v chromium),,chromium) \
        $(if $(filter x86_64,$(shell uname -m)),$(if $(shell command -v qemu-x86_64),,qemu-user))

system-packages:
	@[ -z "$(strip $(DEBS))" ] \
		|| $(APT) install -y -q --no-install-recommends $(DEBS) >/dev/null 2>&1 \
		|| { $(APT) update -q >/dev/null 2>&1 && $(APT) install -y -q --no-install-recommends $(DEBS) >/dev/null; } \
		|| echo "warning: could not install $(strip $(DEBS)) (apt-get): the tests that need them will be skipped"

# Arize Phoenix, the real OTLP receiver tests/integration/test_otel_phoenix.py exports spans to, in a venv of its
# own (its many pinned dependencies never meet Ratchet's); about 850 MB and a minute or two, once.
PHOENIX_VENV ?= .venv-phoenix
PHOENIX_SPEC ?= arize-phoenix>=20.26,<21

$(PHOENIX_VENV)/.installed:
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX_VENV)/bin/python -m pip install --quiet "$(PHOENIX_SPEC)"
	touch $@

quickstart: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/quickstart.sh

test: $(STAMP) system-packages $(PHOENIX_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest
	PYTHON=$(PYTHON) LLAMA_CPP_VERSION=$(LLAMA_CPP_VERSION) LLAMA_CPU=$(LLAMA_CPU) bash scripts/check_wheel.sh

# Build Ratchet's wheel, install it into a fresh venv and run `ratchet doctor` + `ratchet predict` outside the clone.
wheel-check: $(STAMP)
	PYTHON=$(PYTHON) LLAMA_CPP_VERSION=$(LLAMA_CPP_VERSION) LLAMA_CPU=$(LLAMA_CPU) bash scripts/check_wheel.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/embedded_lm.py

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .quickstart .pytest_cache .ruff_cache
