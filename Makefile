# The project's two commands (see README):
#   make figures [SCALE=smoke|cpu|paper] [DEVICE=auto|cpu|cuda]   regenerate every figure (main job)
#   make test                                                      unit tests + nbval over the notebooks
# Both create (or reuse) the virtual environment .venv and fetch MNIST into data/ when missing.

SCALE ?= cpu
DEVICE ?= auto
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OMP_NUM_THREADS ?= 2
export PYTHONHASHSEED := 0

.PHONY: venv data figures test lab bench clean-cache

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

data: venv data/mnist.npz

data/mnist.npz:
	$(MAKE) venv
	$(PY) -m paper_utils.data

figures: venv data
	$(PY) -m paper_utils.run_notebooks --scale $(SCALE) --device $(DEVICE)

test: venv data
	$(PY) -m pytest -q tests notebooks --nbval-lax --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

lab: venv data
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: venv data
	$(PY) benchmarks/bench_dual_epoch.py

clean-cache:
	rm -rf build/cache
