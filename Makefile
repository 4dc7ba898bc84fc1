# Two commands do all set-up on a fresh machine:
#   make demo   train MAML on sinusoid regression (no download) and evaluate it
#   make test   lint and run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist processes (each test file runs whole in one); 2 fits CI's two cores
TEST_WORKERS ?= 2

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metax train sinusoid --algo maml --shots 10 --out runs/demo --overwrite

lint: $(STAMP)
	$(PY) -m ruff check metax tests benchmarks notebooks
	$(PY) -m ruff format --check metax tests benchmarks notebooks

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --doctest-modules metax tests

clean:
	rm -rf $(VENV)
