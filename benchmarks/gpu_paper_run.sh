#!/usr/bin/env bash
# Every notebook at the paper's settings on one GPU, on a machine that reaches no package registry.
#
#   OUT=/some/folder bash benchmarks/gpu_paper_run.sh        # from the repository root
#
# Needs there: python3 3.12 with CUDA PyTorch and the scientific stack (numpy, scipy, matplotlib,
# seaborn, scikit-learn, scikit-image, h5py, tqdm, numba, ...), plus two git-ignored paths that travel
# with the working tree: the wheel bundle .whl/ (made by benchmarks/gpu_bundle.sh on a machine with
# PyPI) and data/mnist.npz (`make data`). Nothing is downloaded.
#
# Steps: check the bundle (present, at most 64 MiB, built for this Python), install it with
# `pip install --no-index --no-deps --target $SITE` (the image's own packages are left alone), check
# that every module the notebooks import loads and that papermill finds the `python3` kernel, then
# `python -m paper_utils.run_notebooks --scale $SCALE --device $DEVICE` under a time limit, and pack
# the results into $OUT as at most 6 files:
#   run.log                   everything printed (environment, install, one line per notebook)
#   timings.json              wall seconds and status per notebook, device name, total
#   figures_<scale>.tar.gz    the scale's figure folder (figures/paper/: PNG, PDF, claims/, CLAIMS.md, claims.json)
#   notebooks_<scale>.tar.gz  the executed notebooks (build/<scale>/*.ipynb)
#   env.txt                   GPU, driver, Python, torch and the versions of every imported package
#   entries_<scale>.tar.gz    the cache entries the run computed and the access logs (cpu and paper scales):
#                             tar xzf entries_<scale>.tar.gz -C build && make store SCALE=<scale>
#
# Variables: SCALE (paper), DEVICE (cuda), ONLY (notebook prefixes, e.g. "01 04"; at paper scale the default
# is every notebook, those with entries not yet in results/paper/store first), OUT (build/gpu_run),
# WHL (.whl), SITE (/tmp/paper_site), PYTHON (python3), DEADLINE (570: seconds from the start by
# which $OUT must be packed; the notebooks get what is left after the install minus 25 s),
# MRI_CACHE (a folder of prepared MRI datasets, mri-*.npz, copied into the cache before the run).
# Trained models are cached under build/cache (or $PAPER_UTILS_CACHE), so a second call on the same
# machine resumes where a cut-off one stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
SCALE=${SCALE:-paper}
DEVICE=${DEVICE:-cuda}
ONLY=${ONLY:-}
OUT=${OUT:-build/gpu_run}
WHL=${WHL:-.whl}
SITE=${SITE:-/tmp/paper_site}
PYTHON=${PYTHON:-python3}
DEADLINE=${DEADLINE:-570}
MRI_CACHE=${MRI_CACHE:-}
LIMIT_MIB=64
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STARTED=$(mktemp)  # emptied here; written once the notebooks start (so a failed check packs no stale figures)
: > "$STARTED"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH" PYTHONUNBUFFERED=1

prepare() {
  echo "== $(date -u +%FT%TZ) scale=$SCALE device=$DEVICE only=${ONLY:-all} on $(hostname)"
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  # ---- the bundle
  if [ ! -f "$WHL/MANIFEST.txt" ] || ! ls "$WHL"/*.whl >/dev/null 2>&1; then
    echo "error: wheel bundle $WHL/ is missing (or has no MANIFEST.txt): run 'bash benchmarks/gpu_bundle.sh'" \
         "on a machine that reaches PyPI and let $WHL travel with the working tree (device tool: carry)" >&2
    return 1
  fi
  local bytes; bytes=$(du -sb "$WHL" | cut -f1)
  if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "error: wheel bundle $WHL/ is $((bytes / 1048576)) MiB, over $LIMIT_MIB MiB: rebuild it with gpu_bundle.sh" >&2
    return 1
  fi
  local tag want
  tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")') || return 1
  want=$(sed -n '1s/.*bundle for \(cp[0-9]*\).*/\1/p' "$WHL/MANIFEST.txt")
  if [ "$tag" != "$want" ]; then
    echo "error: the bundle was built for $want but $PYTHON is $tag: rebuild it with PYVER=${tag:2:1}.${tag:3}" >&2
    return 1
  fi
  [ -f data/mnist.npz ] || { echo "error: data/mnist.npz is missing: run 'make data' and let it travel" >&2; return 1; }
  echo "== installing $(grep -c '\.whl$' "$WHL/MANIFEST.txt") wheels ($((bytes / 1048576)) MiB) into $SITE"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$WHL"/*.whl || { echo "error: installing the bundle failed" >&2; return 1; }
  # ---- everything the notebooks import, and the kernel papermill starts
  "$PYTHON" - "$DEVICE" > "$OUT/env.txt" <<'EOF' || { cat "$OUT/env.txt"; echo "error: the environment is incomplete (above)" >&2; return 1; }
import importlib, platform, sys
bad = []
print("python", platform.python_version(), sys.executable)
for name in ("torch", "numpy", "scipy", "matplotlib", "seaborn", "sklearn", "skimage", "h5py", "tqdm", "numba",
             "papermill", "nbclient", "nbformat", "ipykernel", "jupyter_client", "zmq", "ipywidgets",
             "sigpy", "sigpy.mri", "pywt", "nibabel", "pydicom", "dipy", "paper_utils.run_notebooks"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:28s} {getattr(mod, '__version__', '')}  {getattr(mod, '__file__', '')}")
    except Exception as exc:  # noqa: BLE001
        bad.append(name)
        print(f"{name:28s} FAILED: {type(exc).__name__}: {exc}")
try:
    from jupyter_client.kernelspec import KernelSpecManager
    print("kernel python3:", KernelSpecManager().get_kernel_spec("python3").argv)
except Exception as exc:  # noqa: BLE001
    bad.append("kernel python3")
    print("kernel python3 FAILED:", exc)
try:  # the real MRI files behind the simulated MRI source ship inside the bundled wheels
    from paper_utils import mri
    for subject in getattr(mri, "SIMULATED_SUBJECTS", ()):
        print("MRI source", subject.name, subject.path())
except Exception as exc:  # noqa: BLE001
    bad.append("MRI source files")
    print("MRI source files FAILED:", exc)
import torch
print("cuda available:", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    bad.append("cuda")
sys.exit(f"missing: {bad}" if bad else 0)
EOF
  cat "$OUT/env.txt"
  "$PYTHON" -m pip check 2>&1 | sed 's/^/pip check: /' | head -20 || true
  sed -n 's/^# left out on purpose/pip check: expected missing, left out of the bundle on purpose/p' "$WHL/MANIFEST.txt"
  if [ -n "$MRI_CACHE" ]; then
    local cache; cache=$("$PYTHON" -c 'from paper_utils.pipeline.paths import cache_dir; print(cache_dir())')/mri
    mkdir -p "$cache" && cp -v "$MRI_CACHE"/mri-*.npz "$cache"/ || { echo "error: copying MRI_CACHE failed" >&2; return 1; }
  fi
}

run_notebooks() {
  local left=$((DEADLINE - ($(date +%s) - START) - 25))
  [ "$left" -gt 30 ] || { echo "error: only $left s left for the notebooks (DEADLINE=$DEADLINE)" >&2; return 1; }
  if [ -z "$ONLY" ] && [ "$SCALE" = paper ]; then
    # the notebooks whose entries are not yet in the paper store first (paper_utils.paper_pieces)
    ONLY=$("$PYTHON" -m paper_utils.paper_pieces list --gpu-order) || ONLY=
  fi
  echo "== notebooks: at most $left s${ONLY:+, in the order $ONLY}"
  echo yes > "$STARTED"
  # shellcheck disable=SC2086
  timeout --kill-after=10 "$left" "$PYTHON" -m paper_utils.run_notebooks --scale "$SCALE" --device "$DEVICE" \
    ${ONLY:+--only $ONLY}
  local rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "== cut off after $left s (DEADLINE); the claims of the notebooks that finished:"
    "$PYTHON" -c "from paper_utils.report.claims_report import write_report; print(write_report('$SCALE'))" || true
  fi
  return "$rc"
}

{ prepare && run_notebooks; } 2>&1 | tee "$OUT/run.log"
rc=${PIPESTATUS[0]}

# ---- pack the results: at most 6 files in $OUT (figures and notebooks only if the notebooks ran)
started=$(cat "$STARTED"); rm -f "$STARTED"
figdir=$("$PYTHON" -c "from paper_utils.pipeline.paths import output_dir; print(output_dir('$SCALE'))" 2>/dev/null)
[ -n "$started" ] && [ -f "build/$SCALE/timings.json" ] && cp "build/$SCALE/timings.json" "$OUT/timings.json"
if [ -n "$started" ] && [ -n "$figdir" ] && [ -d "$figdir" ]; then
  tar czf "$OUT/figures_$SCALE.tar.gz" -C "$(dirname "$figdir")" "$(basename "$figdir")"
fi
if [ -n "$started" ] && ls "build/$SCALE"/*.ipynb >/dev/null 2>&1; then
  (cd "build/$SCALE" && tar czf "$OUT/notebooks_$SCALE.tar.gz" ./*.ipynb)
fi
# the entries this run computed (logged, in no store) and the access logs, also of a notebook cut off partway:
# merged here with `tar xzf entries_<scale>.tar.gz -C build && make store SCALE=<scale>`, so the next run
# resumes from them (its trainings and solves are not lost with the machine)
if [ -n "$started" ] && [ "$SCALE" != smoke ]; then
  "$PYTHON" -m paper_utils.pipeline.store --scale "$SCALE" --pack "$OUT/entries_$SCALE.tar.gz" 2>&1 | tee -a "$OUT/run.log"
fi
{
  echo "== exit status $rc after $(($(date +%s) - START)) s; files in $OUT:"
  ls -l "$OUT"
  for f in "$OUT"/*; do
    [ "$(stat -c %s "$f")" -gt $((16 * 1048576)) ] && echo "WARNING: $f is over 16 MiB: it will not come back from the device"
  done
} 2>&1 | tee -a "$OUT/run.log"
exit "$rc"
