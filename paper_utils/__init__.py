"""Companion package to Sahiner et al., "Convex Regularization behind Neural Reconstruction" (ICLR 2021).

The map, in layers from the bottom up; a module imports only from its own layer and those below
(``tests/test_layout.py`` checks it):

- :mod:`paper_utils.pipeline`     configurations per scale (``smoke``, ``cpu``, ``paper``), paths, runtime
  checks, the on-disk cache and the committed results store (``results/cpu/store``)
- :mod:`paper_utils.data`         MNIST offline (:mod:`~paper_utils.data.mnist`) and the noise models
- :mod:`paper_utils.nets`         the patch matrix ``Yp`` of eq. (3), the two-layer ReLU network of eq. (1)-(2)
  (:mod:`~paper_utils.nets.primal`) and the convex dual network of eq. (4)-(5) (:mod:`~paper_utils.nets.dual`)
- :mod:`paper_utils.dual_solver`  the exact, certified solver of eq. (4) (:func:`~paper_utils.dual_solver.solve_dual`)
  and column generation over sign patterns (:func:`~paper_utils.dual_solver.solve_global`)
- :mod:`paper_utils.training`     the paper's Adam runs, cached with their exact solves
  (:mod:`~paper_utils.training.denoisers`), the primal trained to convergence, sweeps, the unrolled network
- :mod:`paper_utils.report`       claims and ``CLAIMS.md``, notebook tables, plotting helpers, metrics, and
  eq. (8)'s reading as patch clustering plus linear filtering (:mod:`~paper_utils.report.interpret`)
- :mod:`paper_utils.mri`          everything MRI: data sources, coils, masks, SENSE, data sets, runs, scores
- :mod:`paper_utils.figures`      one module per notebook: that figure's runs, claims and plot
- :mod:`paper_utils.run_notebooks` the main job: every notebook through papermill at one scale

Letter key for tensor shapes in every docstring: N images, M patches (output pixels), d patch dimension
(C k k), P sign patterns, m filters.
"""

__version__ = "0.1.0"
