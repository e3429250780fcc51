"""gansweep sweeps, one subpackage per layer, lowest first:

- ``spec``: what a sweep is (the spec's typed sections, their one validator, the grid);
- ``searchers``: which trials a sweep runs beyond the grid (the structured search);
- ``record``: what a sweep has recorded (its records, their layout, object storage, the
  verdict); results/ reads sweeps through it;
- ``run``: running sweeps on Ray Tune (the only layer that imports Ray);
- ``replays``: ``gansweep replay``, searchers and schedulers on recorded grids;
- ``cli``: the ``gansweep`` command.

Imports: nothing of gansweep (each subpackage says what it may import; tests/test_layers.py
holds the rules).
"""
