"""Running sweeps on Ray: the only package that imports Ray Tune. The driver (``driver``:
launch, resume, the two phases), the trial (``worker``), what the driver records as Tune
reports (``recorder``), the references every trial compares against (``references``), the
scheduler (``scheduler``), the searcher adapter (``searcher``), the progress table
(``reporter``), trackers (``tracking``, ``mlflow_tracker``), signals (``interrupts``), the
cluster connection (``ray_connect``), Tune's snapshot files (``tune_state``) and the one
adapter to what of Tune is not public API (``tune_internals``).

Imports: the layers below it (core, spec, searchers, record, results) and Ray; not replays
or cli.
"""
