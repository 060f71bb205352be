#!/usr/bin/env bash
# Paper-scale Figure 2 (primal and dual, three noise levels) on one GPU, plus the dual-epoch benchmark on it.
# Usage (repo root, on a machine with CUDA torch and data/mnist.npz):
#   OUT=build/gpu bash benchmarks/gpu_paper_scale.sh
# Trained models land in a cache folder, tarred to $OUT/fig2_paper_cache.tgz; unpack it into
# build/cache/ to let notebook 01 at scale=paper plot them without retraining.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-build/gpu}; CACHE=${CACHE:-/tmp/gpu_cache}
mkdir -p "$OUT" "$CACHE"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout "${BENCH_LIMIT:-150}" python3 benchmarks/bench_dual_epoch.py --device cuda --eager --epochs 3 2>&1 \
  | grep -v Warning | tee "$OUT/bench_dual_epoch_gpu.txt"
PAPER_UTILS_CACHE=$CACHE timeout "${TRAIN_LIMIT:-330}" python3 -m paper_utils.training.denoisers --scale paper \
  --device cuda --no-progress 2>&1 | grep -v Warning | tee "$OUT/fig2_paper_train.txt"
tar czf "$OUT/fig2_paper_cache.tgz" -C "$CACHE" .
ls -la "$OUT"
