"""Paper-scale MRI (Figs. 6, 7, 11) and the unrolled network of Fig. 5b on a GPU machine without
SigPy or the packages that ship the source MRI images.

Step 1, here (CPU, all packages installed): ``python benchmarks/gpu_paper_extras.py export``
prepares the paper-scale MRI datasets (JSENSE, cached in build/cache/mri as usual) and writes their
tensors to ``build/gpu_export/mri_paper.pt``.
Step 2, on the GPU machine (torch only): ``python benchmarks/gpu_paper_extras.py train --cache DIR``
trains the MRI primal/dual networks for R = 2, 4, 8 (into ``DIR/mri_models/<dataset stem>``, the
layout of :func:`paper_utils.mri.runs.model_cache`) and the two-iteration unrolled network of
Fig. 5b (sigma = 0.75, into ``DIR/unrolled``), then prints the time of each stage.
Unpack ``DIR`` into ``build/cache`` and the paper-scale notebooks load these models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from paper_utils.pipeline import config
from paper_utils.pipeline import runtime
from paper_utils.pipeline.cache import Cache
from paper_utils.data.mnist import DenoisingSet

EXPORT = Path("build/gpu_export/mri_paper.pt")


def export() -> None:
    from paper_utils.mri.runs import load_mri_data

    cfgs = [config.mri_config("paper", R) for R in config.MRI_ACCELERATIONS]
    t = time.perf_counter()
    datasets = load_mri_data(cfgs, progress=True)
    payload = {}
    for R, data in datasets.items():
        payload[float(R)] = {"stem": data.cache_path.stem, "train_input": data.train_input,
                             "train_target": data.train_target, "test_input": data.test_input,
                             "test_target": data.test_target}
    EXPORT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, EXPORT)
    print(f"exported {sorted(payload)} in {time.perf_counter() - t:.1f} s -> {EXPORT}")


def train(cache_root: Path, device: str, parts: list[str], accelerations: list[int]) -> None:
    from paper_utils.training.denoisers import load_or_train_dual, load_or_train_primal, train_denoisers

    runtime.setup(0)
    dev = runtime.resolve_device(device)
    if "mri" in parts:
        payload = torch.load(EXPORT, weights_only=True)
        for R in accelerations:
            d = payload[float(R)]
            cfg = config.mri_config("paper", R)
            train_set = DenoisingSet(noisy=d["train_input"], clean=d["train_target"], mean=0.0, std=1.0)
            test_set = DenoisingSet(noisy=d["test_input"], clean=d["test_target"], mean=0.0, std=1.0)
            cache = Cache(cache_root / "mri_models" / d["stem"])
            for name, fn in (("primal", load_or_train_primal), ("dual", load_or_train_dual)):
                t = time.perf_counter()
                _, hist = fn(cfg, train_set, test_set, device=dev, cache=cache, progress=False)
                print(f"MRI R={R} {name}: {time.perf_counter() - t:.1f} s (training {hist.seconds[-1]:.1f} s); "
                      f"final train objective {hist.train_objective[-1]:.5g}, test loss {hist.test_loss[-1]:.5g}",
                      flush=True)
    if "unrolled" in parts:
        from paper_utils.training.unrolled import load_or_train_unrolled

        cfg = config.mnist_denoise_config("paper", 0.75)
        run = train_denoisers(cfg, device=dev, cache=Cache(cache_root), progress=False)
        t = time.perf_counter()
        _, hist = load_or_train_unrolled(cfg, run.train, run.test, device=dev, cache=Cache(cache_root), progress=False)
        print(f"unrolled (Fig. 5b, sigma 0.75): {time.perf_counter() - t:.1f} s; final train objective "
              f"{hist.train_objective[-1]:.5g}, test loss {hist.test_loss[-1]:.5g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("export", "train"))
    parser.add_argument("--cache", type=Path, default=Path("build/cache"))
    parser.add_argument("--device", default="auto", choices=runtime.DEVICES)
    parser.add_argument("--parts", nargs="*", default=["mri", "unrolled"])
    parser.add_argument("--accelerations", type=int, nargs="*", default=list(config.MRI_ACCELERATIONS))
    args = parser.parse_args()
    export() if args.step == "export" else train(args.cache, args.device, args.parts, args.accelerations)


if __name__ == "__main__":
    main()
