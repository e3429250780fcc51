"""gansweep results: a sweep's records aggregated into Parquet tables and the interactive
comparison report (``report``), read from a sweep directory.

Imports: gansweep.core, sweep.spec, sweep.searchers and sweep.record. No Ray.
"""
