"""What a sweep is: the spec file's typed sections (``schema``), their one validator
(``validate``, with ``fields``, ``pairs`` and ``ranges``: the ranges of the scheduler and
search settings, which replay's options share), the grid of trials a spec expands into
(``grid``), the score rules (``ranking``), the trackers a spec may name (``trackers``) and
reading and writing a sweep's recorded spec (``files``).

Imports: gansweep.core only. No Ray.
"""
