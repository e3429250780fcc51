"""``gansweep replay``: schedulers (``schedulers``) and searchers (``searchers``) measured
on a finished grid's recorded results, with no training and no cluster; ``summary`` holds
the one replay loop and its figures (regret against all seeds and a held-out one);
``options`` parses their command-line descriptions.

Imports: core, spec, searchers, record and sweep.run.scheduler (the live sweeps' ASHA class:
a replay drives the same object). Ray only through it.
"""
