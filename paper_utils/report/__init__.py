"""The report: claims and their record (:mod:`.claims`), the claims report (:mod:`.claims_report`),
tables and the notebooks' status cell (:mod:`.tables`), plotting helpers (:mod:`.plotting`), metrics
(:mod:`.metrics`) and the interpretation of the networks as patch clustering plus linear filtering,
eq. (8) (:mod:`.interpret`), the run's status cell (:mod:`.run_status`) and the comparison of a fresh
claims report with the committed one (:mod:`.compare`, ``make compare``)."""
