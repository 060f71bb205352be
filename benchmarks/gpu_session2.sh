set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi -L
finish() { tar czf $OUT/extras_cache.tgz -C build/cache mri_models unrolled 2>/dev/null; ls -la $OUT; }
trap finish EXIT
timeout 190 python3 benchmarks/bench_solver.py --scale cpu --device cuda --cap 60 --solver-cap 90 2>&1 | grep -v "it/s\]" | tee $OUT/bench_solver_gpu.txt
timeout 250 python3 benchmarks/gpu_paper_extras.py train --device cuda --parts mri 2>&1 | tee $OUT/mri_paper_gpu.txt
timeout 70 python3 benchmarks/gpu_paper_extras.py train --device cuda --parts unrolled 2>&1 | tee $OUT/unrolled_paper_gpu.txt
