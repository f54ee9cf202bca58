"""Studies: the main job (one run), what-if sweeps and their reports."""
