"""Train (and cache) the MRI networks of Figures 6, 7 and 11 without Jupyter and print what they give:
``python -m paper_utils.mri --scale paper --device cuda`` (see :func:`main`; ``--help`` for the options)."""

from __future__ import annotations

import argparse

from paper_utils.mri.evaluation import evaluate_mri, mean_score_rows
from paper_utils.mri.runs import acceleration_rows, gap_rows, split_rows, timing_rows, train_mri_runs, volumes_note
from paper_utils.pipeline import config, runtime
from paper_utils.training.denoisers import format_rows


def main(argv: list[str] | None = None) -> None:
    """Train (and cache) the MRI models of Figures 6, 7 and 11 without Jupyter, e.g. on a GPU machine,
    and print the data, the duality gaps, the test PSNR/SSIM and the time per stage:

        python -m paper_utils.mri --scale paper --device cuda
    """
    parser = argparse.ArgumentParser(description="Train and cache the MRI primal and dual networks (Fig. 6, 7, 11).")
    parser.add_argument("--scale", default="cpu", choices=config.SCALES)
    parser.add_argument("--device", default="auto", choices=runtime.DEVICES)
    parser.add_argument("--R", type=float, nargs="*", default=list(config.MRI_ACCELERATIONS), dest="accelerations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default="simulated", choices=("simulated", "fastmri"))
    parser.add_argument("--fastmri-path", default="")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (for logs)")
    args = parser.parse_args(argv)
    runtime.setup(args.seed)
    dev = runtime.resolve_device(args.device)
    cfgs = [config.mri_config(args.scale, R, seed=args.seed) for R in args.accelerations]
    print(cfgs[0], flush=True)
    runs = train_mri_runs(cfgs, dev, source=args.source, fastmri_path=args.fastmri_path,
                          progress=not args.no_progress)
    print(volumes_note(runs[0].data))
    print(format_rows(split_rows(runs[0].data)))
    print(format_rows(acceleration_rows([run.data for run in runs])))
    print(format_rows(gap_rows(runs), digits=4), flush=True)
    scores = [evaluate_mri(run) for run in runs]
    print(format_rows(mean_score_rows(scores)))
    print(format_rows(timing_rows(runs, scores), digits=4))
    for run in runs:
        print(run.cfg.label(), "primal s/epoch", f"{run.primal_history.seconds[-1] / run.cfg.epochs:.2f}",
              "dual s/epoch", f"{run.dual_history.seconds[-1] / run.cfg.epochs:.2f}")


if __name__ == "__main__":
    main()
