"""The report: claims and their record (:mod:`.claims`), the claims report (:mod:`.claims_report`),
tables and the notebooks' status cell (:mod:`.tables`), plotting helpers (:mod:`.plotting`), metrics
(:mod:`.metrics`) and the interpretation of the networks as patch clustering plus linear filtering,
eq. (8) (:mod:`.interpret`)."""
