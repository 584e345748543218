# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates a virtual environment in .venv when none is active, and installs the project into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
# torch and torchvision first, pinned: on this project's machines these releases lie on disk.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# One stamp per set of extras: `make demo` installs the core alone (no Gradio, faiss, Spark, Ray, playwright),
# `make vise-demo` adds faiss, `make test` and `make docs` what the suite and the site need.
CORE := $(VENV)/.hf_memotion_core
VISE := $(VENV)/.hf_memotion_vise
FULL := $(VENV)/.hf_memotion_full
DOCS := $(VENV)/.hf_memotion_docs
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo vise-demo test test-slow lint docs install install-all clean

$(CORE): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e .
	@touch $(CORE)

$(VISE): $(CORE)
	$(PIP) -e ".[vise]"
	@touch $(VISE)

# The suite covers every extra: the Space (gradio, playwright), faiss, Spark, Ray, OCR, ONNX Runtime and the docs site.
$(FULL): $(CORE)
	$(PIP) -e ".[dev,docs,space,vise,spark,ocr,ray,onnx]"
	@touch $(FULL) $(VISE) $(DOCS)

$(DOCS): $(CORE)
	$(PIP) -e ".[docs]"
	@touch $(DOCS)

install: $(CORE)

install-all: $(FULL)

demo: $(CORE)
	$(PY) scripts/make_demo_data.py configs/demo.yaml
	$(PY) scripts/train.py configs/demo.yaml
	$(PY) scripts/predict.py outputs/demo/ensemble

# VisE end to end on the demo corpus: mine pseudo-labels, pretrain a backbone, run the downstream protocols.
vise-demo: $(VISE)
	$(PY) scripts/mine_vise_labels.py
	$(PY) scripts/pretrain_vise.py
	$(PY) scripts/evaluate_vise.py

lint: $(FULL)
	$(PY) -m ruff check src tests scripts benchmarks space docs
	$(PY) -m ruff format --check src tests scripts benchmarks space docs

test: lint
	$(PY) -m pytest -m "not slow" --doctest-modules src tests $(PYTEST_ARGS)

# pytest exits 5 when no test is marked slow: that is not a failure.
test-slow: $(FULL)
	$(PY) -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The documentation site in site/: the guides in docs/ and one API page per public class and function, from the
# docstrings; --strict turns every warning (a broken link, a docstring griffe cannot read) into a failure.
docs: $(DOCS)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(PY) -m mkdocs build --strict

clean:
	rm -rf outputs site .pytest_cache .ruff_cache
