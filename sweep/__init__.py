"""gansweep sweeps: search-space expansion, Ray Tune launch/resume, and the CLI."""
