"""The pipeline: configurations per scale, paths, the on-disk cache and the committed results store,
runtime checks, and the main job that executes the notebooks (:mod:`.run_notebooks`)."""
