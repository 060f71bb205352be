# Second GPU session (what ran on the lent H100, trimmed to the device time left): paper-scale MRI
# at R = 4 and the unrolled network of Fig. 5b; the solver benchmark ran in its own call.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
finish() { tar czf $OUT/extras_cache.tgz -C build/cache mri_models unrolled 2>/dev/null; ls -la $OUT; }
trap finish EXIT
timeout 45 python3 benchmarks/gpu_paper_extras.py train --device cuda --parts unrolled 2>&1 | tee $OUT/unrolled_paper_gpu.txt
timeout 110 python3 benchmarks/gpu_paper_extras.py train --device cuda --parts mri --accelerations 4 2>&1 | tee $OUT/mri_paper_gpu.txt
