#!/usr/bin/env bash
# Paper-scale MRI training (R = 4; Figs. 6, 7, 11) and the two-iteration unrolled network of Fig. 5b
# on one GPU, each stage timed, under short time limits (45 s and 110 s).
# Usage (repo root, on a machine with CUDA torch, after `python benchmarks/gpu_paper_extras.py export`
# has written build/gpu_export/mri_paper.pt on a machine with SigPy and the MRI source packages):
#   OUT=build/gpu bash benchmarks/gpu_paper_mri_unrolled.sh
# Writes $OUT/unrolled_paper_gpu.txt, $OUT/mri_paper_gpu.txt (times, final objectives and losses) and
# $OUT/extras_cache.tgz (the trained models; unpack into build/cache/ for the paper-scale notebooks).
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
OUT=${OUT:-build/gpu}
mkdir -p "$OUT"
finish() { tar czf "$OUT/extras_cache.tgz" -C build/cache mri_models unrolled 2>/dev/null; ls -la "$OUT"; }
trap finish EXIT
timeout 45 python3 benchmarks/gpu_paper_extras.py train --device cuda --parts unrolled 2>&1 | tee "$OUT/unrolled_paper_gpu.txt"
timeout 110 python3 benchmarks/gpu_paper_extras.py train --device cuda --parts mri --accelerations 4 2>&1 | tee "$OUT/mri_paper_gpu.txt"
