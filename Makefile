# draw-ai: `make demo` trains and reports on the embedded sample; `make test` runs every test.
# Both create the environment first (a venv in .venv; conda users see environment.yml).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8866
# The dashboard's address: only this machine. README "Dashboard" says how to expose it deliberately.
IP ?= 127.0.0.1

.PHONY: env demo test test-fast bench lab dashboard lint format strip browser clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU build (a looser pin pulls GBs of CUDA packages).
	# -qq: errors only (setuptools' notes on every editable install are not for the person installing).
	$(PY) -m pip install -qq -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Debian's chromium for the browser tests (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

demo: env
	$(PY) -m drawai.jobs demo

# Every test: unit, notebooks (papermill), browser (Playwright + chromium), ruff, stripped notebooks.
test: env browser
	$(PY) -m pytest --durations=15

test-fast: env
	$(PY) -m pytest -x -m "not slow and not browser"

bench: env
	$(PY) -m drawai.bench $(ARGS)

# The repository's root: notebooks/ and the jobs' reports under runs/ side by side.
lab: env
	$(VENV)/bin/jupyter lab --ip 127.0.0.1

dashboard: env
	$(VENV)/bin/voila --no-browser --Voila.ip=$(IP) --port=$(PORT) --Voila.config_file_paths=config $(ARGS) \
	  notebooks/dashboard.ipynb

lint: env
	$(VENV)/bin/ruff check .

format: env
	$(VENV)/bin/ruff check --fix .

strip: env
	$(PY) scripts/strip_notebooks.py

clean:
	rm -rf runs test-artifacts .pytest_cache .ruff_cache
