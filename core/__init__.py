"""gansweep core: transferable GANs, per-unit treatments, losses, data, metrics and the
one training loop.

Imports: gansweep.core only (nothing of sweep/ or results/, no Ray).
"""
