"""What a sweep has recorded and what it concludes: the sweep directory's records
(``state``), where each trial's files are (``layout``), their copy on object storage
(``storage``) and the verdict read from them (``verdict``). results/ reads sweeps through
this package.

Imports: gansweep.core, sweep.spec, sweep.searchers. No Ray.
"""
