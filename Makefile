# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates a virtual environment in .venv when none is active, and installs the project into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
# torch and torchvision first, pinned: on this project's machines these releases lie on disk.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.hf_memotion_installed

.PHONY: demo vise-demo test test-slow lint docs install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev,docs,space,vise,spark,ocr,ray]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/make_demo_data.py configs/demo.yaml
	$(PY) scripts/train.py configs/demo.yaml
	$(PY) scripts/predict.py outputs/demo/ensemble

# VisE end to end on the demo corpus: mine pseudo-labels, pretrain a backbone, run the downstream protocols.
vise-demo: $(STAMP)
	$(PY) scripts/mine_vise_labels.py
	$(PY) scripts/pretrain_vise.py
	$(PY) scripts/evaluate_vise.py

lint: $(STAMP)
	$(PY) -m ruff check src tests scripts space docs
	$(PY) -m ruff format --check src tests scripts space docs

test: lint
	$(PY) -m pytest -m "not slow" --doctest-modules src tests $(PYTEST_ARGS)

# pytest exits 5 when no test is marked slow: that is not a failure.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The documentation site in site/: the guides in docs/ and one API page per public class and function, from the
# docstrings; --strict turns every warning (a broken link, a docstring griffe cannot read) into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(PY) -m mkdocs build --strict

clean:
	rm -rf outputs site .pytest_cache .ruff_cache
