"""What every trial of a sweep compares against, made once before any trial starts, into
the cache the trials read (their cache_dir is the sweep directory): each target's real-data
FID statistics (copied from the machine's cache when an earlier sweep made them) and, if
the spec asks for the classifier metric, its classifier. With several sources, also the FID
between each source's training data and each target (Wang et al. Table 4). All recorded in
``REFERENCES_FILE``.
"""
from __future__ import annotations

import json
from pathlib import Path

import ray
import torch

from gansweep.core.checkpoint import SourceInfo
from gansweep.core.data import load_folder
from gansweep.core.errors import GansweepError
from gansweep.core.evaluate import reference_set, reference_stats, target_classifier
from gansweep.core.features import FeatureStats, release_extractors
from gansweep.core.metrics import fid
from gansweep.core.trial import TrialTemplate
from gansweep.sweep.record.state import REFERENCES_FILE, atomic_write_text
from gansweep.sweep.run.worker import trial_device
from gansweep.sweep.spec.schema import SweepSpec


def prepare(spec: SweepSpec, template: TrialTemplate, sweep_dir: Path) -> str | None:
    """Make and record the references; returns the classifier metric's negatives (the
    spec's, else the first source's training data; None without that metric).

    Where the trials use GPUs it runs as a Ray task holding a trial's resources (Ray
    accounts for the GPU it uses, and frees it); else in the driver, on the CPU. Either
    way nothing stays loaded afterwards: the driver must not hold Inception for the whole
    sweep, nor touch a GPU outside Ray's accounting."""
    if spec.resources.gpu > 0:
        task = ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)(_here)
        return ray.get(task.remote(spec, template, sweep_dir))
    return _here(spec, template, sweep_dir)


def _here(spec: SweepSpec, template: TrialTemplate, sweep_dir: Path) -> str | None:
    device = torch.device(trial_device()[0] if ray.is_initialized() else "cpu")
    try:
        return _make(spec, template, sweep_dir, device)
    finally:
        release_extractors()


def _make(spec: SweepSpec, template: TrialTemplate, sweep_dir: Path,
          device: torch.device) -> str | None:
    sources = [template.sources[s] for s in spec.sources if s is not None]
    weights, cache = template.options["inception_weights"], str(sweep_dir)
    negatives = spec.classifier_negatives
    if "classifier" in spec.metrics and negatives is None:
        negatives = sources[0].data if sources else None
        if negatives is None:
            raise GansweepError("classifier_negatives: needed by the 'classifier' metric when "
                                "no source gives its training data")
    # Each source's data statistics once, whatever the number of targets.
    source_stats = {s.path: _source_stats(spec, s, weights, cache, device) for s in sources} \
        if len(sources) > 1 else {}
    classifiers, gaps = [], []
    for target in spec.targets:
        images = load_folder(target, spec.arch.resolution, labelled=None)
        real = reference_stats(reference_set(images, spec.budget.fid_real), weights, cache,
                               device, spec.metrics)
        if negatives is not None:
            classifier = target_classifier(images, negatives, spec.classifier_steps, cache,
                                           device)
            classifiers.append({"target": target, "classes": classifier.classes,
                                "balanced_accuracy": classifier.accuracy})
        for source, stats in source_stats.items():
            data = template.sources[source].data
            row = {"source": source, "source_data": data, "target": target,
                   "source_target_fid": None if stats is None else fid(real, stats)}
            if stats is None:
                row["error"] = "the source records no training data (imported)" \
                    if data is None else \
                    f"the source's training data {data} is not on this machine"
            gaps.append(row)
    atomic_write_text(sweep_dir / REFERENCES_FILE, json.dumps(
        {"classifier_negatives": negatives, "classifiers": classifiers, "sources": gaps},
        indent=1))
    return negatives


def _source_stats(spec: SweepSpec, source: SourceInfo, weights: str | None, cache: str,
                  device: torch.device) -> FeatureStats | None:
    """A source's training-data statistics (None: its data is not here)."""
    if source.data is None or not Path(source.data).is_dir():
        return None
    ref = reference_set(load_folder(source.data, spec.arch.resolution), spec.budget.fid_real)
    return reference_stats(ref, weights, cache, device)
