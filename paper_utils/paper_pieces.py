"""The paper's settings on 2 CPU cores, in pieces: each piece computes one independent part of the
``paper``-scale results (one noise level's Adam-trained networks, one certified solve, one primal seed,
one group of P values) and leaves its entries in the cache, from which ``make store SCALE=paper`` adds
them to the committed store ``results/paper/store/`` (:mod:`paper_utils.pipeline.store`).

    make paper-pieces                                 # the list: name, notebooks, projected minutes, done?
    make paper-piece PIECE=01-sigma0.5-exact          # run one (resumes from the cache and the stores)
    make store SCALE=paper                            # add its entries to results/paper/store

Pieces share nothing but the store entries they write: a piece loads what the cache or a store already
holds and computes the rest, each entry written atomically (:class:`paper_utils.pipeline.cache.Cache`), so
a piece stopped partway leaves only whole entries and a rerun resumes after the last one. Run as a job
array on a cluster, every job writes to one shared ``$PAPER_UTILS_CACHE``; one ``make store SCALE=paper``
merges them (README, "The paper's settings in pieces").

Each run appends a record to ``results/paper/pieces.json`` (piece, seconds, entries, host, CPU model,
threads, code version, date): the measured time per piece on the machine that ran it. The projected
minutes in the list are estimates on 2 cores from ``benchmarks/README.md``'s kernel rates, not measurements.

The converged-primal budget of the optimum basis at ``paper`` scale is ours, not the paper's
(:func:`paper_utils.pipeline.config.optimum_budget`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from paper_utils.pipeline import config, runtime
from paper_utils.pipeline.paths import project_root, store_dirs
from paper_utils.pipeline.store import access_log_dir

SCALE = "paper"


@dataclass(frozen=True)
class Piece:
    """One independent unit of the paper-scale computation.

    Attributes:
        name: e.g. ``01-sigma0.5-dual`` (notebook, setting, what).
        notebooks: the notebooks whose paper-scale run reads its entries.
        what: one line on what it computes.
        minutes: projected minutes on 2 CPU cores (an estimate; the measured time goes to pieces.json).
        compute: ``compute(device, progress)`` loads or computes the piece's entries.
    """

    name: str
    notebooks: tuple[str, ...]
    what: str
    minutes: float
    compute: Callable[[torch.device, bool], None]


# ------------------------------------------------------------------------------------------------
# the pieces
# ------------------------------------------------------------------------------------------------
def _mnist(cfg: config.DenoiseConfig):
    from paper_utils.data.mnist import load_mnist, mnist_denoising

    return mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed, arrays=load_mnist())


def _adam(cfgs: list[config.DenoiseConfig], models: tuple[str, ...] = ("primal", "dual")):
    """The paper's Adam trainings of ``models`` for each configuration (loaded when cached)."""
    def compute(device, progress):
        from paper_utils.training.denoisers import load_or_train_dual, load_or_train_primal

        for cfg in cfgs:
            train, test = _mnist(cfg)
            if "primal" in models:
                load_or_train_primal(cfg, train, test, device=device, progress=progress)
            if "dual" in models:
                load_or_train_dual(cfg, train, test, device=device, progress=progress)
    return compute


def _exact(cfgs: list[config.DenoiseConfig], tol: float = 1e-6):
    """Certified solves of the sampled duals, with no time limit (the notebooks' own calls; notebook 10's
    300 s limit then reuses the finished entry)."""
    def compute(device, progress):
        from paper_utils.nets.dual import sample_generators
        from paper_utils.nets.patches import extract_patches
        from paper_utils.training.denoisers import load_or_solve_exact_data

        for cfg in cfgs:
            train, _ = _mnist(cfg)
            # the generators the Adam-trained dual of cfg draws (CPU float64, cfg.seed), moved to the device
            G = sample_generators(extract_patches(train.noisy, cfg.kernel_size), cfg.n_patterns, seed=cfg.seed)
            load_or_solve_exact_data(cfg, train, G.to(device), tol=tol, time_limit=None, progress=progress)
    return compute


def _converged(cfg: config.DenoiseConfig, seeds: tuple[int, ...]):
    """The converged primals of the optimum basis (budget: :func:`paper_utils.pipeline.config.optimum_budget`)."""
    def compute(device, progress):
        from paper_utils.training.convergence import load_or_converge_primal

        budget = config.optimum_budget(SCALE)
        train, test = _mnist(cfg)
        for seed in seeds:
            load_or_converge_primal(cfg, train, test, init_seed=seed, device=device, adam_epochs=budget.adam_epochs,
                                    lbfgs_max_iter=budget.lbfgs_max_iter, time_limit=budget.time_limit,
                                    progress=progress)
    return compute


def _unrolled(cfg: config.DenoiseConfig):
    def compute(device, progress):
        from paper_utils.training.unrolled import load_or_train_unrolled

        train, test = _mnist(cfg)
        load_or_train_unrolled(cfg, train, test, device=device, progress=progress)
    return compute


def _chain(*computes):
    def compute(device, progress):
        for c in computes:
            c(device, progress)
    return compute


# Projected minutes on 2 cores (benchmarks/README.md, fused kernels): a P = 8,000 dual trains 30 epochs in
# about 22 min, 85% of it evaluating the 10,000 test images each epoch (time ~ P; Figures 8-10's duals below
# Figure 2's P evaluate the test set every fifth epoch and the last three: about 9.5 min); the m = 512 primal's 30
# epochs with evaluations about 1.5 min; a certified solve at P = 8,000 about 3.5 min plus the eq. (5)
# network's objective (measured: 319-469 s in all); a converged m = 512 seed (30 Adam epochs, <= 5,000 L-BFGS
# iterations) about 16 min (measured 975 s); an m = 25 seed about 3 min; the unrolled network (conv2d training
# steps, evaluations in patch form) about 6 min (measured 376 s). The Adam pieces measured 1,425-1,519 s.
# A dual at P = 8,000: 30 Adam epochs of 6.3 s and 31 training-set evaluations of 2.1 s (4.25 min), plus 35 s
# per test-set evaluation (31 of them, or 9 with ``test_every = 5``: config.DenoiseConfig.evaluates_test).
_DUAL_FIXED_MIN_P8000 = 4.25
_TEST_EVAL_MIN_P8000 = 35.0 / 60
_EXACT_MIN_P8000 = 7.0
# a generation round (its sampled solve to a certified gap, warm from the last round's patterns, and the
# search for violating patterns) at P patterns of Fig. 2's 600 images grows faster than P: measured 159 s at
# P = 3,000, 289 s at 5,000, 693 s at 7,000 and 905 s at 8,000 (84 min for the 16 solves up to 8,000); a
# least-squares fit over the 16 rounds: 0.0094 P + 1.15e-5 P^2 seconds
def _generation_round_minutes(P: int) -> float:
    return (0.0094 * P + 1.15e-5 * P * P) / 60


def _dual_minutes(counts, cfg: config.DenoiseConfig) -> float:
    n_test = sum(cfg.evaluates_test(e) for e in range(cfg.epochs + 1))
    return sum(0.5 + (_DUAL_FIXED_MIN_P8000 + n_test * _TEST_EVAL_MIN_P8000) * P / 8000 for P in counts)


def pieces() -> list[Piece]:
    """Every piece, in the order a single machine would run them (no piece needs another's entries; the
    certified solves come before notebook 10's time-limited call of the same entry)."""
    out: list[Piece] = []
    budget = config.optimum_budget(SCALE)
    # the notebooks reading each noise level's entries (networks and solve; the seeds skip 03 and 10)
    users_of = {0.25: ("01_mnist_duality_gap",),
                0.5: ("01_mnist_duality_gap", "02_mnist_examples", "03_dual_filter_spectra", "08_pattern_ablation",
                      "10_exact_dual_solver"),
                0.75: ("01_mnist_duality_gap", "02_mnist_examples", "04_activation_clusters")}
    for sigma in config.FIG2_SIGMAS:
        cfg = config.mnist_denoise_config(SCALE, sigma)
        users = users_of[sigma]
        out.append(Piece(f"01-sigma{sigma:g}-adam", users,
                         f"Fig. 2 at sigma {sigma:g}: the paper's Adam primal (m = {cfg.n_filters}) and Adam + hinge "
                         f"dual (P = {cfg.n_patterns}), {cfg.epochs} epochs, {cfg.n_test} test images",
                         1.5 + _dual_minutes([cfg.n_patterns], cfg), _adam([cfg])))
        out.append(Piece(f"01-sigma{sigma:g}-exact", users,
                         f"Fig. 2 at sigma {sigma:g}: the sampled dual (P = {cfg.n_patterns}) solved with a certificate "
                         f"(tol 1e-6)", _EXACT_MIN_P8000, _exact([cfg])))
        seeds = budget.seeds if sigma == 0.5 or budget.extra_seeds_all_noises else budget.seeds[:1]
        # notebook 11 at sigma 0.5 uses every training image: its primal seeds are these (pattern_generation)
        seed_users = tuple(u for u in users if u[:2] not in ("03", "10")) + (
            ("11_pattern_generation",) if sigma == 0.5 else ())
        for seed in seeds:
            out.append(Piece(f"01-sigma{sigma:g}-seed{seed}", seed_users,
                             f"Fig. 2 at sigma {sigma:g}: the converged primal of seed {seed} ({budget.adam_epochs} "
                             f"Adam epochs, at most {budget.lbfgs_max_iter} L-BFGS iterations)",
                             16.0, _converged(cfg, (seed,))))
    out.append(Piece("04-unrolled", ("04_activation_clusters",),
                     "Fig. 5's unrolled network (T = 2, m = 512 per layer) at sigma 0.75, 30 epochs", 7.0,
                     _unrolled(config.mnist_denoise_config(SCALE, 0.75))))

    seeds = sweep_seeds("robustness")
    for noise, level in config.ROBUSTNESS_NOISES:
        for s in seeds:
            cfg = config.robustness_config(SCALE, noise, level, seed=s)
            out.append(Piece(f"07-{noise}{level:g}-seed{s}", ("07_noise_robustness",),
                             f"Figs. 8-9, {noise} {level:g}, seed {s}: Adam primal (m = {cfg.n_filters}) and dual "
                             f"(P = {cfg.n_patterns})", 1.0 + _dual_minutes([cfg.n_patterns], cfg), _adam([cfg])))
        cfg = config.robustness_config(SCALE, noise, level, seed=seeds[0])
        out.append(Piece(f"07-{noise}{level:g}-optimum", ("07_noise_robustness",),
                         f"Figs. 8-9, {noise} {level:g}: certified solve (P = {cfg.n_patterns}) and converged primals "
                         f"(m = {cfg.n_filters}) of seeds {', '.join(map(str, budget.seeds))}",
                         _EXACT_MIN_P8000 + 3.0 * len(budget.seeds),
                         _chain(_exact([cfg]), _converged(cfg, budget.seeds))))

    counts = config.ablation_pattern_counts(SCALE)
    small = [P for P in counts if P < 8000]
    for sigma in config.ABLATION_SIGMAS:
        cfgs = [config.ablation_config(SCALE, sigma, P) for P in small]
        out.append(Piece(f"08-sigma{sigma:g}-P16-4000", ("08_pattern_ablation",),
                         f"Fig. 10 at sigma {sigma:g}: Adam + hinge duals and certified solves at P = "
                         f"{', '.join(map(str, small))}", _dual_minutes(small, cfgs[0]) + _EXACT_MIN_P8000 * sum(small) / 8000,
                         _chain(_adam(cfgs, ("dual",)), _exact(cfgs))))
    cfg = config.mnist_denoise_config(SCALE, 0.1)
    out.append(Piece("08-sigma0.1-P8000", ("08_pattern_ablation",),
                     f"Fig. 10 at sigma 0.1, P = {cfg.n_patterns}: Adam primal and dual, certified solve",
                     1.5 + _dual_minutes([cfg.n_patterns], cfg) + _EXACT_MIN_P8000, _chain(_adam([cfg]), _exact([cfg]))))
    out.append(Piece("08-sigma0.1-seed0", ("08_pattern_ablation",),
                     f"Fig. 10 at sigma 0.1: the converged primal of seed {budget.seeds[0]}", 16.0,
                     _converged(cfg, budget.seeds[:1])))
    from paper_utils.figures import pattern_generation

    gen = pattern_generation.settings(SCALE)
    out.append(Piece("11-generation", ("11_pattern_generation",),
                     f"ours, on Fig. 2's {gen['n_images']} images at sigma 0.5: random samples of P = "
                     f"{', '.join(map(str, gen['random_P']))} solved with a certificate (tol 1e-5), then "
                     f"{gen['rounds']} rounds of pattern generation ({gen['n_init']} + {gen['add']} per round)",
                     _EXACT_MIN_P8000 * sum(gen["random_P"]) / 8000
                     + sum(_generation_round_minutes(gen["n_init"] + r * gen["add"]) for r in range(gen["rounds"] + 1)),
                     _generation()))
    return out


def _generation():
    def compute(device, progress):
        from paper_utils.figures import pattern_generation

        cfg = config.mnist_denoise_config(SCALE, 0.5)
        pattern_generation.run_generation(cfg, SCALE, device=device, progress=progress)
    return compute


def sweep_seeds(experiment: str) -> list[int]:
    from paper_utils.training.sweep import seeds_for

    return seeds_for(experiment, SCALE)


# ------------------------------------------------------------------------------------------------
# running and recording
# ------------------------------------------------------------------------------------------------
def records_path() -> Path:
    """``results/paper/pieces.json``: one record per piece run."""
    return project_root() / "results" / SCALE / "pieces.json"


def load_records() -> list[dict]:
    path = records_path()
    return json.loads(path.read_text()) if path.exists() else []


def _find(name: str) -> Piece:
    by_name = {p.name: p for p in pieces()}
    if name not in by_name:
        raise KeyError(f"no piece {name!r}; `python -m paper_utils.paper_pieces list` shows them "
                       f"({len(by_name)} pieces: {', '.join(list(by_name)[:4])}, ...)")
    return by_name[name]


def run_piece(name: str, *, device="auto", progress: bool = True, log=print) -> dict:
    """Run piece ``name``: its entries are loaded or computed and logged to
    ``build/paper/cache-access/piece-<name>.log``; a record is appended to :func:`records_path`."""
    from paper_utils.pipeline.cache import ENTRY_SOURCES
    from paper_utils.report.claims import code_version

    piece = _find(name)
    dev = runtime.resolve_device(device)
    log_path = access_log_dir(SCALE) / f"piece-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    previous = os.environ.get("PAPER_UTILS_ACCESS_LOG")
    os.environ["PAPER_UTILS_ACCESS_LOG"] = str(log_path)
    before = dict(ENTRY_SOURCES)
    log(f"piece {name}: {piece.what} (projected {piece.minutes:g} min on 2 cores) on {dev}")
    start = time.perf_counter()
    try:
        piece.compute(dev, progress)
    finally:
        if previous is None:
            os.environ.pop("PAPER_UTILS_ACCESS_LOG", None)
        else:
            os.environ["PAPER_UTILS_ACCESS_LOG"] = previous
    seconds = time.perf_counter() - start
    entries = sorted(set(log_path.read_text().split())) if log_path.exists() else []
    record = {"piece": name, "seconds": round(seconds, 1), "entries": entries,
              "computed": ENTRY_SOURCES["computed"] - before["computed"],
              "device": str(dev),
              "host": platform.node(), "cpu": runtime.cpu_model(), "threads": torch.get_num_threads(),
              "code": code_version(),
              "model_code_version": config.MODEL_CODE_VERSION,
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    records = load_records() + [record]
    records_path().parent.mkdir(parents=True, exist_ok=True)
    records_path().write_text(json.dumps(records, indent=1) + "\n")
    log(f"piece {name}: {seconds:.0f} s, {len(entries)} entries ({record['computed']} computed); "
        f"next: make store SCALE=paper")
    return record


def status_rows() -> list[dict]:
    """One row per piece: name, notebooks, projected minutes, and the latest measured run of the
    current code (seconds, or empty)."""
    latest = {}
    for rec in load_records():
        if rec.get("model_code_version") == config.MODEL_CODE_VERSION:
            latest[rec["piece"]] = rec
    return [{"piece": p.name, "notebooks": ", ".join(nb[:2] for nb in p.notebooks), "projected min": p.minutes,
             "measured s": latest[p.name]["seconds"] if p.name in latest else "", "what": p.what}
            for p in pieces()]


def notebook_rows() -> list[dict]:
    """Per notebook that reads pieces: its pieces, the sum of their measured seconds (the notebook's
    paper-scale time on the machine that ran them, without its own run from the store) and the pieces
    not yet measured for the current code (the sum is then partial)."""
    measured = {r["piece"]: r["measured s"] for r in status_rows()}
    notebooks = sorted({nb for p in pieces() for nb in p.notebooks})
    rows = []
    for nb in notebooks:
        mine = [p.name for p in pieces() if nb in p.notebooks]
        missing = [n for n in mine if measured[n] == ""]
        rows.append({"notebook": nb, "pieces": mine, "missing": missing,
                     "measured s": round(sum(measured[n] for n in mine if n not in missing), 1)})
    return rows


def in_store(name: str) -> bool:
    """Whether piece ``name`` ran for the current code and every entry it recorded is in a store."""
    latest = [r for r in load_records()
              if r["piece"] == name and r.get("model_code_version") == config.MODEL_CODE_VERSION]
    return bool(latest) and all(any((d / e).exists() for d in store_dirs()) for e in latest[-1]["entries"])


def gpu_order() -> list[str]:
    """The notebook prefixes in the order a GPU run of the whole paper takes them: first those with any
    entry not yet in the stores (every notebook that no piece covers, and those with a piece still to
    run), then those whose pieces are all in the stores (their run only loads them)."""
    notebooks = sorted(p.stem for p in (project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    done = {nb for nb in notebooks
            if (mine := [p.name for p in pieces() if nb in p.notebooks]) and all(in_store(n) for n in mine)}
    return [nb[:2] for nb in notebooks if nb not in done] + [nb[:2] for nb in notebooks if nb in done]


def markdown_table(rows: list[dict] | None = None) -> str:
    """The measured pieces of :func:`status_rows` as a Markdown table: piece, notebooks, measured and
    projected minutes on 2 cores."""
    lines = ["| piece | notebooks | measured on 2 cores | projected |", "|---|---|---|---|"]
    for r in rows if rows is not None else status_rows():
        if r["measured s"] != "":
            lines.append(f"| `{r['piece']}` | {r['notebooks']} | {r['measured s'] / 60:.1f} min | "
                         f"{r['projected min']:.0f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The paper-scale computation in pieces (paper_utils.paper_pieces).")
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="every piece, its projected and measured time")
    lst.add_argument("--names", action="store_true", help="names only, one per line (for a job array)")
    lst.add_argument("--gpu-order", action="store_true",
                     help="the notebook prefixes, those with entries not yet in the stores first (one line)")
    lst.add_argument("--notebooks", action="store_true",
                     help="per notebook: the measured seconds of its pieces and those still to run")
    lst.add_argument("--markdown", action="store_true",
                     help="the measured pieces as a Markdown table (docs/running.md)")
    run = sub.add_parser("run", help="run pieces by name")
    run.add_argument("names", nargs="+")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "list":
        rows = status_rows()
        if args.names:
            print("\n".join(r["piece"] for r in rows))
        elif args.gpu_order:
            print(" ".join(gpu_order()))
        elif args.markdown:
            print(markdown_table(rows))
        elif args.notebooks:
            for r in notebook_rows():
                done = len(r["pieces"]) - len(r["missing"])
                print(f"{r['notebook']:<27} {done:>2} of {len(r['pieces']):>2} pieces measured, "
                      f"{r['measured s'] / 60:6.1f} min" + (f"; to run: {' '.join(r['missing'])}" if r["missing"] else ""))
        else:
            for r in rows:
                print(f"{r['piece']:<27} {r['notebooks']:<18} {r['projected min']:>4.0f} min  "
                      f"{'measured ' + str(r['measured s']) + ' s' if r['measured s'] != '' else '':<18} {r['what']}")
        return 0
    runtime.setup(0)
    try:
        for name in args.names:
            run_piece(name, device=args.device, progress=not args.no_progress)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
