"""The metrics registry (``Metric``: how each is computed from an evaluation, which way is
better, its sampling sd) and the formulas: FID and KID on Inception features
(``core.features``), its noise, per-class FID; the IS, IW, classifier and Intra-LPIPS
entries."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gansweep.core.critics import TargetClassifier, independent_wasserstein
from gansweep.core.errors import GansweepError
from gansweep.core.features import FEATURE_DIM, FeatureStats
from gansweep.core.lpips import intra_lpips, load_lpips, resolve_lpips_weights
from gansweep.core.registry import Registry


@dataclass
class Evaluation:
    """What a metric may use from one evaluation. Images are uint8; ``real_*`` is the
    reference set (the whole target folder, capped at fid_real images)."""

    real: FeatureStats
    fake: FeatureStats
    real_images: torch.Tensor | None = None
    fake_images: torch.Tensor | None = None
    fake_labels: torch.Tensor | None = None  # a conditional generator's classes
    classifier: TargetClassifier | None = None
    iw_steps: int = 300
    seed: int = 0
    device: torch.device | str = "cpu"
    train_images: torch.Tensor | None = None  # the images G is trained on (few-shot set)
    lpips_weights: str | None = None


@dataclass(frozen=True)
class Metric:
    """A registered metric: how it is computed from an evaluation, which way is better, and
    the result key of its sampling sd where it has one. ``loss`` is the one place a
    metric's direction becomes a comparison: everything that ranks calls it (or ``mode``
    and ``worst``, made from it)."""

    name: str
    compute: Callable[[Evaluation], float]
    higher_is_better: bool = False
    sd: str | None = None  # the result key of its sampling sd (a noise margin needs one)

    def loss(self, value: float) -> float:
        """The value on a lower-is-better scale."""
        return -value if self.higher_is_better else value

    @property
    def worst(self) -> float:
        """What a diverged run or a non-finite value reports, so that it ranks last."""
        return self.loss(math.inf)

    @property
    def mode(self) -> str:
        """Ray Tune's mode for it."""
        return "max" if self.loss(1.0) < 0 else "min"


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, higher_is_better: bool = False, sd: str | None = None):
    def deco(fn: Callable[[Evaluation], float]):
        METRICS.register(name)(Metric(name, fn, higher_is_better, sd))
        return fn
    return deco


def metric(name: str) -> Metric:
    return METRICS.get(name)


def _trace_sqrt_product(full: FeatureStats, low_rank: FeatureStats) -> float:
    """tr sqrt(S1 S2) with S2 = A A^T of rank < n: the nonzero eigenvalues of S1 A A^T are
    those of the small symmetric A^T S1 A, so no 2048 x 2048 sqrtm is needed."""
    n = len(low_rank.features)
    a = (low_rank.features.astype(np.float64) - low_rank.mu) / np.sqrt(n - 1)
    m = a @ full.sigma @ a.T
    eigenvalues = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def fid(real: FeatureStats, fake: FeatureStats) -> float:
    """Frechet Inception Distance between the Gaussians of the two feature sets.

    The same quantity as pytorch-fid's calculate_frechet_distance, which is used when both
    sets have more samples than feature dimensions. Otherwise one covariance has low rank
    and tr sqrt(S1 S2) is computed exactly from an n x n eigenproblem: 14 ms instead of
    pytorch-fid's 2048 x 2048 sqrtm (15.7 s on one core), at every evaluation of every trial.
    """
    small, other = sorted((fake, real), key=lambda s: len(s.features))
    if len(small.features) > FEATURE_DIM:
        from pytorch_fid.fid_score import calculate_frechet_distance  # imports torchvision

        try:
            return float(calculate_frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma))
        except ValueError:  # a large imaginary part of sqrtm: degenerate samples
            return float("nan")
    diff = real.mu - fake.mu
    return float(diff @ diff + np.trace(real.sigma) + np.trace(fake.sigma)
                 - 2 * _trace_sqrt_product(other, small))


def _centred_trace(gram: np.ndarray) -> float:
    """trace(H M H) for the centring matrix H = I - 11^T/n."""
    return float(np.trace(gram) - gram.sum() / len(gram))


def resampled_fids(real: FeatureStats, fake: FeatureStats,
                   draws: list[np.ndarray]) -> np.ndarray:
    """FID of ``real`` against each resample ``fake.features[idx]`` (idx in ``draws``: any
    rows, repeated or not), exactly as ``fid`` would compute it, at the cost of small n x n
    matrices: the resample's covariance enters tr sqrt(S1 S2) only through Gram matrices of
    the generated features, which are computed once. Needs one side at most FEATURE_DIM
    images."""
    x = fake.features.astype(np.float64)
    n, n_real = len(x), len(real.features)
    gram = x @ x.T
    if n <= n_real or n_real > FEATURE_DIM:  # fid() puts the generated side in low rank
        cross = x @ real.sigma @ x.T

        def tr_sqrt(idx: np.ndarray) -> float:
            c = cross[np.ix_(idx, idx)]
            c = c - c.mean(0) - c.mean(1, keepdims=True) + c.mean()
            return float(np.sqrt(np.clip(np.linalg.eigvalsh((c + c.T) / 2), 0, None)).sum()
                         / np.sqrt(len(idx) - 1))
    else:  # the real side is in low rank: project the generated features on it
        y = x @ ((real.features.astype(np.float64) - real.mu) / np.sqrt(n_real - 1)).T

        def tr_sqrt(idx: np.ndarray) -> float:
            ys = y[idx] - y[idx].mean(0)
            m = ys.T @ ys / (len(idx) - 1)
            return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    out = []
    for idx in draws:
        diff = real.mu - x[idx].mean(0)
        trace_fake = _centred_trace(gram[np.ix_(idx, idx)]) / (len(idx) - 1)
        out.append(diff @ diff + np.trace(real.sigma) + trace_fake - 2 * tr_sqrt(idx))
    return np.array(out)


def fid_sd(real: FeatureStats, fake: FeatureStats, draws: int = 32,
           seed: int = 0) -> float | None:
    """FID's sampling noise from the generated images: the standard deviation of FID over
    random halves of the generated features, drawn without replacement. A half-sample's
    statistic varies about as much as the full sample's does between independent draws (for
    a mean: sigma^2/(n/2) x (1 - 1/2) = sigma^2/n); the bootstrap, with replacement,
    overstates FID's noise several-fold at tens of images, because repeated rows inflate
    FID's small-sample bias (tests/test_metrics.py measures both). The real set is common
    to every trial of a sweep, so its own noise does not change a ranking. None with fewer
    than 4 generated images or when both sets exceed FEATURE_DIM images."""
    n = len(fake.features)
    if n < 4 or min(n, len(real.features)) > FEATURE_DIM:
        return None
    rng = np.random.default_rng(seed)
    values = resampled_fids(real, fake, [rng.permutation(n)[: n // 2] for _ in range(draws)])
    return float(np.std(values, ddof=1))


def kid(real: FeatureStats, fake: FeatureStats, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, averaged over random subsets. The subset size is capped by
    the smaller set, so it works for the tens of images of small targets."""
    a, b = real.features.astype(np.float64), fake.features.astype(np.float64)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise GansweepError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) \
            - 2 * kxy.mean()
    return float(total / subsets)


register_metric("fid", sd="fid_sd")(lambda e: fid(e.real, e.fake))
register_metric("kid")(lambda e: kid(e.real, e.fake))
register_metric("is", higher_is_better=True, sd="is_sd")(lambda e: e.fake.inception_score[0])


@register_metric("iw", higher_is_better=True)
def _iw(e: Evaluation) -> float:
    if e.real_images is None or e.fake_images is None:
        raise GansweepError("metric 'iw' needs the real and generated images")
    return independent_wasserstein(e.real_images, e.fake_images, e.iw_steps, e.seed, e.device)


@register_metric("classifier", higher_is_better=True)
def _classifier(e: Evaluation) -> float:
    if e.classifier is None or e.fake_images is None:
        raise GansweepError("metric 'classifier' needs a trained target classifier "
                            "(classifier_negatives)")
    return e.classifier.score(e.fake_images, e.fake_labels, e.device)


@register_metric("intra_lpips", higher_is_better=True)
def _intra_lpips(e: Evaluation) -> float:
    if e.train_images is None or e.fake_images is None:
        raise GansweepError("metric 'intra_lpips' needs the generated and training images")
    net = load_lpips(resolve_lpips_weights(e.lpips_weights), str(e.device))
    return intra_lpips(net, e.fake_images, e.train_images)


def compute_metrics(evaluation: Evaluation, names: list[str]) -> dict[str, float]:
    """Named metrics; a non-finite value is reported as ``worst_value``."""
    out = {}
    for name in names:
        m = METRICS.get(name)
        value = m.compute(evaluation)
        out[name] = value if np.isfinite(value) else m.worst
    return out


def per_class_fid(real: FeatureStats, real_labels: torch.Tensor, fake: FeatureStats,
                  fake_labels: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """FID of each class's generated images against that class's real images (Wang et al.
    Table 6). With few images per class it is biased upwards, like any small-sample FID."""
    out = {}
    for c, name in enumerate(classes):
        r, f = real.features[real_labels.numpy() == c], fake.features[fake_labels.numpy() == c]
        out[name] = fid(FeatureStats(r), FeatureStats(f)) if min(len(r), len(f)) >= 2 \
            else float("nan")
    return out
