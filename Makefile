# The two entry points of the README. Each creates .venv and installs what it needs on
# first use (again whenever the packaging files change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint bench clean

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "xmodal_tf needs Python >= 3.10; pick one with: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make train [ARGS="cca --set reg=1e-3"]: run an experiment (default: the default one)
train: $(STAMP)
	$(BIN)/python -m xmodal_tf.train $(ARGS)

## make test [ARGS="-k cca"]: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto tests $(ARGS)

## make lint: ruff's lint rules and formatting check (pyproject.toml), as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## make bench [ARGS="--quick --only models"]: every benchmark; a Markdown table in benchmarks/results.md
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
