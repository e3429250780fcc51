"""gansweep core: transferable GANs, per-unit treatments, losses, data, metrics and the
one training loop. Nothing here imports ``gansweep.sweep`` or ``gansweep.results``."""
