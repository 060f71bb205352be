"""Training: the paper's Adam runs of both networks (:mod:`.adam`), trained or loaded from the cache
with their exact solves (:mod:`.denoisers`), the primal trained to convergence (:mod:`.convergence`,
:mod:`.optimum`), sweeps over many configurations (:mod:`.sweep`) and the unrolled MRI baseline
(:mod:`.unrolled`)."""
