# The project's two commands (see README):
#   make figures [SCALE=smoke|cpu|paper] [DEVICE=auto|cpu|cuda]   regenerate every figure (main job)
#   make test                                                      unit tests + nbval over the notebooks
# Both create (or reuse) the virtual environment .venv and fetch MNIST into data/ when missing.

SCALE ?= cpu
DEVICE ?= auto
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-lib.txt requirements-mri.txt
REQ_HASH := $(shell cat $(REQS) pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OMP_NUM_THREADS ?= 2
export PYTHONHASHSEED := 0

.PHONY: venv data figures test lab bench gpu-bundle smoke-nb clean-cache

venv: $(STAMP)

$(STAMP): $(REQS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

data: venv data/mnist.npz

data/mnist.npz:
	$(MAKE) venv
	$(PY) -m paper_utils.data.mnist

figures: venv data
	$(PY) -m paper_utils.run_notebooks --scale $(SCALE) --device $(DEVICE)

test: venv data
	$(PY) -m pytest -q tests notebooks --nbval-lax --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# As root (a container, say) Jupyter refuses to start without --allow-root. LAB_ARGS adds options,
# e.g. make lab LAB_ARGS="--no-browser --ip=127.0.0.1 --port=8899".
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: venv data
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ROOT) $(LAB_ARGS)

bench: venv data
	$(PY) benchmarks/bench_dual_epoch.py

# Re-execute one committed notebook in place at smoke scale and strip volatile metadata, keeping
# outputs, counts and the ipywidgets state (so JupyterLab draws the stored tqdm bars instead of
# "Error displaying widget: model not found"):  make smoke-nb NB=notebooks/02_mnist_examples.ipynb
smoke-nb: venv data
	test -n "$(NB)" || { echo "usage: make smoke-nb NB=notebooks/NN_name.ipynb" >&2; exit 2; }
	$(VENV)/bin/papermill "$(NB)" "$(NB)" -p scale smoke --cwd notebooks -k python3 --no-progress-bar
	$(PY) -c "import nbformat, sys; nb = nbformat.read(sys.argv[1], 4); nb.cells = [c for c in nb.cells if 'injected-parameters' not in c.metadata.get('tags', [])]; nbformat.write(nb, sys.argv[1])" "$(NB)"
	$(VENV)/bin/nbstripout --keep-output --keep-count --keep-metadata-keys "metadata.widgets" \
	  --extra-keys "metadata.papermill cell.metadata.papermill cell.metadata.execution" "$(NB)"
	! grep -nE 'TqdmWarning|IProgress not found|$(CURDIR)|/\.venv/' "$(NB)" || { echo "$(NB): warning or absolute path in outputs (above)" >&2; exit 1; }

# Wheels for a GPU machine without a package registry (README, "Paper scale on one GPU").
gpu-bundle: data
	bash benchmarks/gpu_bundle.sh

clean-cache:
	rm -rf build/cache
