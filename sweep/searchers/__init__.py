"""How a sweep chooses its trials beyond the grid: the model of the partition effects
(``model``), the structured search policy over it (``structured``) and its confirmation
inside the search's budget (``confirm``: the one rule the sweep, its verdict and the replay
pick by). A new searcher goes here, as a policy with ``next``/``observe`` that knows nothing
of Tune; ``sweep.run.searcher`` drives it under Tune, ``sweep.replays.searchers`` on
recordings.

Imports: gansweep.core and sweep.spec. No Ray.
"""
