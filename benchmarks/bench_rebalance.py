"""What balancing the units does to converge_primal (issue 34, item 0): iterations and final excess over p*.

On two proven small problems of notebook 12 (p* certified by exact enumeration), the primal at 2 m* and 4 m*
is trained from the same 10 Kaiming starts with ``rebalance=False`` and ``rebalance=True`` (both with
restarts after a stalled line search, the same stopping rule and budget). Iteration counts, not seconds:
the result does not depend on the machine's speed.

    .venv/bin/python benchmarks/bench_rebalance.py
"""

import numpy as np
import torch

from paper_utils.figures import theorem1_width as t1
from paper_utils.nets.balance import balanced_objective
from paper_utils.training.convergence import converge_primal


def main(n_seeds: int = 10, budget: int = 20000) -> None:
    problems = [p for p in t1.small_problems("cpu") if p.name in ("digit0-beta0.03", "digit7-beta0.03")]
    for pb in problems:
        opt = t1.solve_proven(pb)
        Y, x = torch.from_numpy(pb.Yp), torch.from_numpy(pb.x)
        for m in (2 * opt.m_star, 4 * opt.m_star):
            for reb in (False, True):
                its, rel, conv = [], [], 0
                for s in range(n_seeds):
                    c = converge_primal(Y, x, pb.beta, n_filters=m, init_seed=s, adam_epochs=0, rows_per_image=len(x),
                                        lbfgs_max_iter=budget, rel_tol=t1.RULE["rel_tol"], window=t1.RULE["window"],
                                        restarts=t1.RULE["restarts"], rebalance=reb, compute_dtype=torch.float64,
                                        progress=False)
                    its.append(c.history["phase"].count("lbfgs"))
                    rel.append((balanced_objective(c.loss, c.U, c.v, pb.beta) - opt.objective) / opt.objective)
                    conv += c.converged
                print(f"{pb.name} (m* = {opt.m_star}) m = {m:3d} rebalance={reb!s:5}: median iterations "
                      f"{int(np.median(its)):6d}, best {min(rel):.2e}, median {np.median(rel):.2e} (balanced, vs p*), "
                      f"within 1e-4: {np.mean(np.array(rel) <= 1e-4):.1f}, rule met {conv}/{n_seeds}", flush=True)


if __name__ == "__main__":
    main()
