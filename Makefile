# The project's two commands (see README):
#   make figures [SCALE=smoke|cpu|paper] [DEVICE=auto|cpu|cuda] [FRESH=1]   regenerate every figure (main job)
#   make test      unit tests, the smoke main job from nothing, nbval over the committed cpu and paper notebooks
# Both create (or reuse) the virtual environment .venv and fetch MNIST into data/ when missing.
# make figures reads what build/cache lacks from the committed results store results/cpu/store;
# FRESH=1 ignores the store and recomputes everything (about 47 minutes at cpu scale on 2 cores, measured).

SCALE ?= cpu
DEVICE ?= auto
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-lib.txt requirements-mri.txt
REQ_HASH := $(shell cat $(REQS) pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
# The project's Jupyter kernel, named in the notebooks' metadata (paper_utils.pipeline.notebook_clean.KERNEL_NAME):
# registered into .venv only (--sys-prefix, never --user: it would leak across environments).
KERNEL := paper-utils
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OMP_NUM_THREADS ?= 2
export PYTHONHASHSEED := 0
# numba's disk cache of the fused dual kernels (paper_utils.nets.dual_kernels): compiled once per machine
export NUMBA_CACHE_DIR ?= $(CURDIR)/build/numba-cache

FRESH ?=
STORE_MODE := $(if $(FRESH),off,fallback)

.PHONY: venv data figures test test-paper unit-tests smoke-figures nbval store paper-pieces paper-piece bracket bracket-grow theorem1-mnist50 lab bench gpu-bundle clean-cache

venv: $(STAMP) $(KERNEL_SPEC)

$(STAMP): $(REQS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

$(KERNEL_SPEC): $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (paper_utils)"

data: venv data/mnist.npz

data/mnist.npz:
	$(MAKE) venv
	$(PY) -m paper_utils.data.mnist

figures: venv data
	PAPER_UTILS_STORE_MODE=$(STORE_MODE) $(PY) -m paper_utils.run_notebooks --scale $(SCALE) --device $(DEVICE)

# Copy the cache entries the last cpu run of each notebook used into the committed results store
# (SCALE=paper: add the entries of the paper pieces run since to results/paper/store).
store: venv
	$(PY) -m paper_utils.pipeline.store --scale $(if $(filter paper,$(SCALE)),paper,cpu)

# The paper's settings in pieces of at most about 90 minutes on 2 cores (paper_utils.paper_pieces):
# `make paper-pieces` lists them, `make paper-piece PIECE=<name>` runs one, then `make store SCALE=paper`.
PIECE ?=
paper-pieces: venv
	$(PY) -m paper_utils.paper_pieces list

paper-piece: venv data
	@test -n "$(PIECE)" || { echo "usage: make paper-piece PIECE=<name> (make paper-pieces lists them)"; exit 2; }
	$(PY) -m paper_utils.paper_pieces run $(PIECE) --device $(DEVICE)

# Theorem 1's bracket on Figure 2's cpu data (about an hour on 2 cores; notebooks 01 and 08's models
# are reused from the cache or the store): writes results/cpu/bracket_sigma0.5.json and .npz, which
# notebooks 08 and 11 read.
bracket: venv data
	$(PY) -m paper_utils.figures.theorem1_bracket --sigma 0.5

# Theorem 1's width on the bracket's data: the committed m = 512 primal grown to 2,048 units (>= m* = 1,760 of U)
# and trained 1,500 L-BFGS iterations with balanced units (about an hour on 2 cores); adds primal_grown to the
# committed bracket files.
bracket-grow: venv data
	$(PY) -m paper_utils.figures.theorem1_bracket --sigma 0.5 --grow

# Theorem 1 on 50 of Figure 2's images (cached, a rerun resumes): column generation until its search finds no
# violating pattern or 30 rounds end, then the primal at m*/4 .. 2 m*; writes results/cpu/theorem1_mnist50.json,
# which notebook 12 reads. BETAS=1e-3 (the committed run) takes about 15 minutes on 2 cores; 1e-4 takes hours.
BETAS ?= 1e-3
theorem1-mnist50: venv data
	$(PY) -m paper_utils.figures.theorem1_mnist50 --betas $(BETAS)

# make test = the unit tests, the smoke main job from nothing (the compute path, in its own cache and
# output folders), then nbval over the committed cpu notebooks, re-executed against the results store
# (strict: a store entry missing for the current code is an error naming the refresh command). The
# paper-scale notebooks have their own target, test-paper: with them make test took 27.5 min on 2 cores
# (their 61 cells 291 s), over the 25-minute budget of CI.
test: unit-tests smoke-figures nbval

unit-tests: venv data
	$(PY) -m pytest -q tests -p no:cacheprovider

smoke-figures: venv data
	rm -rf build/test/smoke
	PAPER_UTILS_CACHE=$(CURDIR)/build/test/smoke/cache PAPER_UTILS_OUTPUT=$(CURDIR)/build/test/smoke/figures PAPER_UTILS_STORE_MODE=off \
	  $(PY) -m paper_utils.run_notebooks --scale smoke

nbval: venv data
	rm -rf build/test/nbval/figures
	PAPER_UTILS_CACHE=$(CURDIR)/build/test/nbval/cache PAPER_UTILS_OUTPUT=$(CURDIR)/build/test/nbval/figures PAPER_UTILS_STORE_MODE=strict \
	  $(PY) -m pytest -q notebooks --nbval-lax --nbval-kernel-name $(KERNEL) --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# nbval over the paper-scale notebooks (figures/paper/notebooks/), re-executed against the stores (strict:
# the paper store for their networks and solves, the cpu store for Theorem 1's problems), 30-90 s per
# notebook on 2 cores (they load what the pieces computed; 02 predicts the 10,000 test images). Not part
# of `make test` (see above): run it after committing a paper-scale notebook.
test-paper: venv data
	rm -rf build/test/nbval-paper/figures
	PAPER_UTILS_CACHE=$(CURDIR)/build/test/nbval-paper/cache PAPER_UTILS_OUTPUT=$(CURDIR)/build/test/nbval-paper/figures PAPER_UTILS_STORE_MODE=strict \
	  $(PY) -m pytest -q figures/paper/notebooks --nbval-lax --nbval-kernel-name $(KERNEL) --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# As root (a container, say) Jupyter refuses to start without --allow-root. LAB_ARGS adds options,
# e.g. make lab LAB_ARGS="--no-browser --ip=127.0.0.1 --port=8899".
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: venv data
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ROOT) $(LAB_ARGS)

bench: venv data
	$(PY) benchmarks/bench_dual_epoch.py

# Wheels for a GPU machine without a package registry (README, "Paper scale on one GPU").
gpu-bundle: data
	bash benchmarks/gpu_bundle.sh

# The companion as a static site (docs/site/): the README as home page, the notebooks with their stored
# outputs (not executed), CLAIMS.md, findings and benchmarks -> build/site/index.html. Offline, about 10 s.
SITE_STAMP := $(VENV)/.site-installed-$(shell cat requirements-site.txt | sha256sum | cut -c1-16)
.PHONY: site test-site

$(SITE_STAMP): requirements-site.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-site.txt
	rm -f $(VENV)/.site-installed-*
	touch $@

site: venv $(SITE_STAMP)
	$(PY) docs/site/build.py

# Builds the site from nothing and checks it in headless Chromium (tests/test_site.py; screenshots and
# the check's report in build/site/screenshots/). Debian's chromium is installed when missing and
# running as root; otherwise: sudo apt-get install chromium.
test-site: venv $(SITE_STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make test-site needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }
	PAPER_UTILS_SITE_TEST=1 $(PY) -m pytest -q tests/test_site.py -p no:cacheprovider

# Did I reproduce it? After any `make figures`: the fresh claims (figures/claims.json) against the committed
# ones (git HEAD), per notebook: flipped verdicts, values moved beyond a relative tolerance, added and removed
# claims; fails if a verdict flipped. COMPARE_ARGS adds options, e.g. COMPARE_ARGS="--rtol 1e-2 --scale paper".
COMPARE_ARGS ?=
.PHONY: compare test-install
compare: venv
	$(PY) -m paper_utils.report.compare $(COMPARE_ARGS)

# The package as others install it (tests/test_install.py; needs the package registry; about 6 min on 2 cores):
# in fresh virtual environments under build/test/install/, a plain `pip install .` runs the README's solver
# example, and the README's `pip install -e ".[notebooks]"`, MNIST and papermill commands run a notebook from the
# results store. Not part of `make test`. PIP_EXTRA_INDEX_URL / PAPER_UTILS_TORCH_INDEX: see the test's docstring.
test-install: venv
	PAPER_UTILS_INSTALL_TESTS=1 $(PY) -m pytest -q -s tests/test_install.py -p no:cacheprovider

clean-cache:
	rm -rf build/cache
