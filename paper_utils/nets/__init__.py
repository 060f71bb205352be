"""The networks: the patch matrix of eq. (3) (:mod:`.patches`), the two-layer ReLU network of
eq. (1)-(2) (:mod:`.primal`) and the convex dual network of eq. (4)-(5) (:mod:`.dual`). The exact
solver of eq. (4) is :mod:`paper_utils.dual_solver`, one layer up."""
