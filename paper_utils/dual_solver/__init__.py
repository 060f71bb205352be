r"""Exact, certified solvers of the convex dual program, eq. (4), sampled and full.

- :func:`solve_dual` (:mod:`.solve`): the sampled program over the P sign patterns of given
  generators, solved to a certified relative gap. Its steps, one module each: the chunked passes over
  the M rows (:mod:`.data`), the ray lasso (:mod:`.lasso`), tilted rays (:mod:`.tilt`), the barrier
  refinement (:mod:`.barrier`), cone projections and the certificate (:mod:`.cones`); the result
  type :class:`DualSolution` (:mod:`.result`).
- :func:`solve_global` (:mod:`.generation`): the full program over every sign pattern (Theorem 1),
  by column generation: the sampled program solved exactly, then pricing (:mod:`.pricing`) finds the
  missing patterns; proven lower bounds on the full program from :mod:`.pricing` and, on small
  problems, from the exact enumeration of the hyperplane arrangement (:mod:`.arrangement`).

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from .cones import _nnls_project
from .data import _Data
from .generation import GlobalSolution, solve_global
from .lasso import _lasso
from .result import DualSolution
from .solve import solve_dual

#: bumped whenever a change can alter a returned solution or its status, even at the rounding level
#: (solve_global's path follows the iterates); cached solutions
#: (``paper_utils.training.denoisers.load_or_solve_exact_data``) carry it in their names
SOLVER_VERSION = 8

__all__ = ["SOLVER_VERSION", "DualSolution", "GlobalSolution", "solve_dual", "solve_global"]
