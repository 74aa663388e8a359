"""The local compute backend: simulated nodes, real training processes, one supervisor per job."""
