#!/usr/bin/env bash
# Prepare, on a machine that reaches PyPI, the wheel bundle that benchmarks/gpu_paper_run.sh installs
# on a GPU machine that reaches no registry (see docs/running.md, "Paper scale on one GPU").
#
#   bash benchmarks/gpu_bundle.sh                 # Python 3.12 manylinux wheels into .whl/ (git-ignored)
#   PYVER=3.11 WHL=.whl-cp311 bash benchmarks/gpu_bundle.sh   # same set for 3.11 (local offline test)
#
# What goes in: the closure of what the notebooks need beyond the GPU machine's image (the jupyter /
# papermill stack, ipywidgets, and whatever requirements-lib.txt and requirements-mri.txt name that
# the image lacks: sigpy, nibabel, pydicom, dipy, nilearn, ...), at the versions pinned in the
# requirements files, minus every package already on that image (benchmarks/gpu_present.txt;
# PRESENT=/path/to/list to override). The closure is resolved by pip for the target Python and
# platform; environment markers are evaluated by the interpreter that runs pip, so use a Python of
# the target version when there is one (PYTHON312=/path/to/python3.12; pyenv's is found).
# Writes WHL/MANIFEST.txt (name, version, bytes) and fails if the bundle plus everything else that
# travels to the GPU machine (tracked files, data/mnist.npz, EXTRA paths) exceeds LIMIT_MIB (64).
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=${PYVER:-3.12}
WHL=${WHL:-.whl}
LIMIT_MIB=${LIMIT_MIB:-64}
PRESENT=${PRESENT:-benchmarks/gpu_present.txt}
EXTRA=${EXTRA:-data/mnist.npz}   # other carried paths counted against the limit (space-separated)
# Top-level needs (versions come from the requirements files, the single source of truth): the
# library's and the MRI sources' requirements, plus what runs the notebooks.
NEED=${NEED:-"$(cat requirements-lib.txt requirements-mri.txt | grep -E '^[A-Za-z0-9]' | grep -v '^torch' \
  | sed 's/[=<>!~;[ ].*//' | tr '\n' ' ')papermill ipykernel nbformat ipywidgets"}
# Left out on purpose (with their own dependencies): packages that a headless papermill run never
# imports although their dependants declare them: ipykernel's debugger (debugpy), IPython's tab
# completion (jedi, parso; IPython falls back without them), and the notebook front ends' JavaScript
# of ipywidgets (widgetsnbextension, jupyterlab_widgets). 12.8 MB that the 64 MiB cannot spare.
SKIP=${SKIP-"debugpy jedi parso widgetsnbextension jupyterlab-widgets"}
TAG=cp${PYVER/./}
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"

# An interpreter of the target version evaluates markers (e.g. python_version < "3.12") correctly.
find_python() {
  local v=$1 p
  for p in "${PYTHON312:-}" "python$v" "$(command -v pyenv >/dev/null && pyenv root)/versions/$v"*/bin/python"$v"; do
    [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 && "$p" -c "import sys; assert sys.version.startswith('$v')" 2>/dev/null \
      && "$p" -m pip --version >/dev/null 2>&1 && { command -v "$p"; return; }
  done
  return 1
}
if PY=$(find_python "$PYVER"); then
  echo "resolving with $PY ($("$PY" --version 2>&1))"
else
  PY=python3
  echo "WARNING: no Python $PYVER with pip found; resolving with $($PY --version 2>&1): markers such as" \
       "python_version < \"$PYVER\" are evaluated for that version (check the closure)" >&2
fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# pins for every package named in the requirements files (plain lines only; -r lines followed by hand)
cat requirements-lib.txt requirements-mri.txt requirements.txt | grep -E '^[A-Za-z0-9]' | grep -v '^torch' > "$work/pins.txt"
: > "$work/need.txt"
for n in $NEED; do
  pin=$(grep -iE "^${n}==" "$work/pins.txt" || true)
  [ -n "$pin" ] || { echo "error: $n is not pinned in the requirements files" >&2; exit 1; }
  echo "$pin" >> "$work/need.txt"
done

echo "== resolving the closure of: $(tr '\n' ' ' < "$work/need.txt")for Python $PYVER (manylinux x86_64)"
"$PY" -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed --report "$work/report.json" \
  --only-binary=:all: --python-version "$PYVER" --implementation cp $PLATFORMS --target "$work/t" \
  -r "$work/need.txt" -c "$work/pins.txt" 2> >(grep -v "is ignored: it is neither" >&2)

# Walk the resolved graph from the top-level needs, stopping at packages the image already has (their
# own dependencies are satisfied there, whatever versions pip would pick here).
"$PY" - "$work/report.json" "$PRESENT" "$work/need.txt" "$SKIP" > "$work/bundle.txt" <<'EOF'
import json, re, sys
from pip._vendor.packaging.requirements import Requirement
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
present = {norm(l.strip()) for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")}
present |= {norm(n) for n in sys.argv[4].split()}
resolved = {norm(i["metadata"]["name"]): i["metadata"] for i in json.load(open(sys.argv[1]))["install"]}
todo = [norm(Requirement(l).name) for l in open(sys.argv[3]) if l.strip()]
bundle = set()
while todo:
    name = todo.pop()
    if name in bundle or name in present:
        continue
    bundle.add(name)
    for spec in resolved[name].get("requires_dist") or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            todo.append(norm(req.name))
for name in sorted(bundle):
    print(f"{resolved[name]['name']}=={resolved[name]['version']}")
EOF
echo "== $(wc -l < "$work/bundle.txt") wheels to fetch (the rest of the closure is on the GPU machine's image)"

mkdir -p "$WHL"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp $PLATFORMS -d "$WHL" -r "$work/bundle.txt" 2> >(grep -v "is ignored: it is neither" >&2)

# Keep exactly one wheel per bundled package (older downloads of other versions would break the install).
"$PY" - "$WHL" "$work/bundle.txt" "$TAG" "$SKIP" <<'EOF'
import re, sys
from pathlib import Path
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
whl, wanted, tag = Path(sys.argv[1]), {}, sys.argv[3]
for line in open(sys.argv[2]):
    name, version = line.strip().split("==")
    wanted[norm(name)] = version
rows, seen = [], set()
for f in sorted(whl.glob("*.whl")):
    name, version = f.name.split("-")[:2]
    key = norm(name)
    if wanted.get(key) != version and wanted.get(key) != version.replace("_", "-"):
        f.unlink()  # not in this bundle (another version, or no longer needed)
        continue
    seen.add(key)
    rows.append((f.stat().st_size, name, version, f.name))
missing = sorted(set(wanted) - seen)
if missing:
    sys.exit(f"error: no wheel downloaded for {missing}")
bad = [r[3] for r in rows if "-cp" in r[3] and f"-{tag}-" not in r[3] and "-abi3-" not in r[3]]
if bad:
    sys.exit(f"error: wheels for another Python than {tag}: {bad}")
rows.sort(reverse=True)
with open(whl / "MANIFEST.txt", "w") as out:
    out.write(f"# wheel bundle for {tag} manylinux x86_64, made by benchmarks/gpu_bundle.sh\n")
    out.write(f"# left out on purpose (never imported by a headless run): {sys.argv[4]}\n")
    for size, name, version, fname in rows:
        out.write(f"{size:>10d}  {name}=={version}  {fname}\n")
    out.write(f"{sum(r[0] for r in rows):>10d}  total ({len(rows)} wheels)\n")
EOF
cat "$WHL/MANIFEST.txt"

# Everything that travels to the GPU machine: tracked + untracked-not-ignored files, the bundle, EXTRA.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
whl_bytes=$(du -sb "$WHL" | cut -f1)
extra_bytes=0
for p in $EXTRA; do
  [ -e "$p" ] || { echo "WARNING: $p (EXTRA) is missing: the GPU run needs it" >&2; continue; }
  extra_bytes=$((extra_bytes + $(du -sb "$p" | cut -f1)))
done
total=$((tree_bytes + whl_bytes + extra_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "travels: working tree $(mib $tree_bytes) + bundle $WHL $(mib $whl_bytes) + $EXTRA $(mib $extra_bytes) = $(mib $total) (limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "error: over the $LIMIT_MIB MiB that may travel to the GPU machine" >&2
  exit 1
fi
