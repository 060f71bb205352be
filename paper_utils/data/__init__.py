"""Data: MNIST offline (:mod:`.mnist`) and the noise models (:mod:`.noise`). MRI data lives in
:mod:`paper_utils.mri`, which holds everything MRI."""
