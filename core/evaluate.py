"""Evaluation of a training run: the reference set and its cached statistics, generated
samples (from the EMA generator when the run keeps one), the metrics with FID's sampling
noise, a larger FID at the scheduler's rungs, and a sample grid."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gansweep.core.config import default_cache_dir
from gansweep.core.critics import TargetClassifier, train_classifier
from gansweep.core.data import ImageSet, load_folder, quantize
from gansweep.core.features import (
    FeatureStats,
    get_extractor,
    real_stats,
    require_classifier,
    resolve_weights,
)
from gansweep.core.metrics import Evaluation, compute_metrics, fid, fid_sd, per_class_fid

if TYPE_CHECKING:
    from gansweep.core.train import TrainState

# Noise seeds, offset from the run's seed, so every evaluation of a run sees the same z.
FID_SEED, GRID_SEED, RUNG_SEED = 10_000, 20_000, 30_000


def reference_set(target: ImageSet, fid_real: int | None) -> ImageSet:
    """The images generated ones are compared with: the whole target folder (capped at
    ``fid_real`` images), not the training subset, so that runs with different target
    sizes meet the same images."""
    return target.subset(min(fid_real, len(target)) if fid_real else None, 0)


def reference_stats(reference: ImageSet, weights: str | None, cache_dir: str | None,
                    device: torch.device, metrics: Sequence[str] = ()) -> FeatureStats:
    """Real-data statistics for FID/KID, cached under ``cache_dir/fid-stats`` (a sweep's
    own copy) backed by the machine's cache under $GANSWEEP_CACHE (the only one without
    ``cache_dir``); refuses weights without a classifier when ``metrics`` include IS."""
    extractor = get_extractor(resolve_weights(weights), device)
    if "is" in metrics:
        require_classifier(extractor)
    machine = Path(default_cache_dir()) / "fid-stats"
    return real_stats(reference.images, reference.digest(), extractor,
                      Path(cache_dir) / "fid-stats" if cache_dir else machine,
                      machine if cache_dir else None)


def target_classifier(target: ImageSet, negatives: str, steps: int, cache_dir: str | None,
                      device: torch.device) -> TargetClassifier:
    """The classifier metric's network: the target's classes vs the ``negatives`` folder,
    trained once (seed 0 whatever the run's seed: every trial meets the same classifier)
    and cached under ``cache_dir/classifiers``."""
    images = load_folder(negatives, target.images.shape[-1])
    return train_classifier(target, images, steps, seed=0, device=device,
                            cache_dir=Path(cache_dir or default_cache_dir()) / "classifiers")


def balanced_labels(s: TrainState, n: int) -> torch.Tensor | None:
    """Classes 0, 1, ..., K-1, 0, 1, ... for n images of a conditional G (None if not)."""
    k = s.cfg.arch.num_classes
    return torch.arange(n) % k if k else None


@torch.no_grad()
def generate(s: TrainState, n: int, seed: int,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images from the evaluated generator (the EMA one if the run keeps it, else G) in
    eval mode, from noise fixed by ``seed`` (and, for a conditional G, of classes
    ``labels``), as uint8 (as PNGs hold)."""
    net = s.ema.net if s.ema is not None else s.G
    gen = torch.Generator().manual_seed(seed)
    chunks = torch.arange(n).split(256)
    was_training = net.training
    net.eval()
    try:
        out = [quantize(net(torch.randn(len(i), s.G.z_dim, generator=gen).to(s.device),
                            None if labels is None else labels[i].to(s.device)).cpu())
               for i in chunks]
    finally:
        net.train(was_training)
    return torch.cat(out)


def images_per_s(s: TrainState) -> float:
    """Real images through D per second of training (evaluation excluded)."""
    seen = s.iteration * s.n_critic * s.cfg.batch_size
    return seen / s.train_seconds if s.train_seconds > 0 else 0.0


def _at_rung(s: TrainState) -> bool:
    """Whether this evaluation is the first at or after one of the scheduler's rungs."""
    previous = s.history[-1]["iteration"] if s.history else 0
    return any(previous < m <= s.iteration for m in s.cfg.rung_milestones)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None


def grid_path(out: Path, iteration: int) -> Path:
    """The sample grid (8 x 8, fixed noise) written at an evaluation."""
    return out / "samples" / f"iter_{iteration:07d}.png"


def evaluate(s: TrainState) -> dict[str, float]:
    """Metrics on fid_samples generated images (with ``fid_sd``, FID's sampling noise), at
    rungs also FID on rung_fid_samples images (``fid_rung``), a sample grid, and the
    history record."""
    record: dict[str, float] = {"iteration": s.iteration, **s.last_losses,
                                "images_per_s": images_per_s(s),
                                "train_seconds": s.train_seconds}
    if s.real is not None:
        n = s.cfg.fid_samples
        labels = balanced_labels(s, n)
        fake = generate(s, n, seed=s.cfg.seed + FID_SEED, labels=labels)
        extractor = get_extractor(resolve_weights(s.cfg.inception_weights), s.device)
        stats = FeatureStats(*extractor.run(fake))
        evaluation = Evaluation(s.real, stats, s.reference.images, fake, labels, s.classifier,
                                s.cfg.iw_steps, s.cfg.seed, s.device, s.data,
                                s.cfg.lpips_weights)
        record.update(compute_metrics(evaluation, s.cfg.metrics))
        if "is" in s.cfg.metrics:
            record["is_sd"] = stats.inception_score[1]  # the mean is the metric, cached
        if "fid" in s.cfg.metrics:
            noise_seed = s.cfg.seed + s.iteration
            record["fid_sd"] = _finite_or_none(fid_sd(s.real, stats, seed=noise_seed))
            if s.cfg.rung_fid_samples and _at_rung(s):
                m = s.cfg.rung_fid_samples
                extra = generate(s, m - n, seed=s.cfg.seed + RUNG_SEED,
                                 labels=None if labels is None else balanced_labels(s, m)[n:])
                more = FeatureStats(np.concatenate([stats.features, extractor(extra)]))
                record["fid_rung"] = _finite_or_none(fid(s.real, more))
                record["fid_rung_sd"] = _finite_or_none(fid_sd(s.real, more, seed=noise_seed))
        if labels is not None and "fid" in s.cfg.metrics:
            record["class_fid"] = per_class_fid(s.real, s.reference.labels, stats,
                                                labels, s.reference.classes)
    grid = generate(s, 64, seed=s.cfg.seed + GRID_SEED, labels=balanced_labels(s, 64))
    path = grid_path(s.out, s.iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    from torchvision.utils import save_image  # torchvision's import is seconds; only here

    save_image(grid.float() / 255, path, nrow=8)
    s.history.append(record)
    return record
