"""FID and KID on pytorch-fid's Inception pool3 features, with cached real-data statistics;
the Inception Score on the same network's logits.

Weights: ``--inception-weights PATH`` or ``$GANSWEEP_INCEPTION_WEIGHTS`` (a state dict in
pytorch-fid's layout), else pytorch-fid's own download.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from gansweep.core.critics import TargetClassifier, independent_wasserstein
from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write, file_sha256
from gansweep.core.inception import DOWNLOAD_NAME, FIDInception, download_weights
from gansweep.core.lpips import intra_lpips, load_lpips, resolve_lpips_weights
from gansweep.core.numerics import fp32_features, own_rng
from gansweep.core.progress import Progress
from gansweep.core.registry import Registry

WEIGHTS_ENV = "GANSWEEP_INCEPTION_WEIGHTS"
FEATURE_DIM = 2048
STATS_VERSION = "2"  # 2: keyed by weights and precision, not by memory layout


def resolve_weights(path: str | os.PathLike | None) -> str | None:
    """The weights file to use, as an absolute path (a sweep's trials run in other working
    directories): the option, else the environment variable, else None (pytorch-fid
    downloads its own)."""
    chosen = path if path else os.environ.get(WEIGHTS_ENV) or None
    if chosen is None:
        return None
    if not Path(chosen).is_file():
        raise GansweepError(f"Inception weights {chosen}: no such file")
    return str(Path(chosen).resolve())


def _state_from_file(weights: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means "not a weights file"
        raise GansweepError(f"Inception weights {weights}: not a PyTorch state dict "
                            f"({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(state, dict):
        raise GansweepError(f"Inception weights {weights}: not a state dict")
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in state.items()}


class InceptionFeatures:
    """pytorch-fid's FID Inception (core.inception), fed uint8 images exactly as pytorch-fid
    feeds PNG files: x / 255, resized to 299 and scaled to [-1, 1] inside the network; in
    float32 with TF32 off (core.numerics). ``identity`` names the weights and the precision:
    cached statistics are keyed by it."""

    def __init__(self, weights: str | None, device: torch.device, batch_size: int = 50,
                 channels_last: bool = False, bf16: bool = False):
        self.device, self.batch_size = device, batch_size
        self.channels_last, self.bf16 = channels_last, bf16
        if weights is None:
            try:
                state = download_weights()
            except OSError as e:  # URLError included: no network, or the download failed
                raise GansweepError(
                    f"cannot download pytorch-fid's Inception weights ({e}); give "
                    f"--inception-weights PATH or set {WEIGHTS_ENV}") from None
            self.identity = f"pytorch-fid-pool3:{DOWNLOAD_NAME}"
        else:
            state = _state_from_file(weights)
            self.identity = "pytorch-fid-pool3:sha256=" + file_sha256(weights)
        try:
            model = FIDInception(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise GansweepError(f"Inception weights {weights}: do not fit pytorch-fid's FID "
                                f"Inception ({' '.join(first[:2])[:200]})") from None
        self.weights = weights or DOWNLOAD_NAME
        self.has_classifier = model.has_classifier
        self.model = model.eval().requires_grad_(False).to(device)
        if channels_last:  # a memory layout: FID within 1e-7, not part of the identity
            self.model = self.model.to(memory_format=torch.channels_last)
        self.identity += ":bf16" if bf16 else ":fp32"

    @torch.inference_mode()
    def run(self, images: torch.Tensor, progress: Progress | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """N x 3 x H x W uint8 -> (N x 2048 pool3 features, N x 1008 logits), float32;
        ``progress`` counts the images."""
        if images.dtype != torch.uint8:
            raise TypeError("features expect uint8 images; quantise generated images first")
        features, logits = [], []
        with fp32_features():
            for batch in images.split(self.batch_size):
                x = batch.to(self.device, non_blocking=True).float().div_(255.0)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                    pool3, out = self.model(x)
                features.append(pool3.float().cpu())
                logits.append(out.float().cpu())
                if progress is not None:
                    progress.update(len(batch))
        return torch.cat(features).numpy(), torch.cat(logits).numpy()

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """N x 3 x H x W uint8 -> N x 2048 float32 pool3 features."""
        return self.run(images)[0]


_EXTRACTORS: dict[tuple[str | None, str], InceptionFeatures] = {}


def get_extractor(weights: str | None, device: torch.device | str = "cpu") -> InceptionFeatures:
    """A per-process cached extractor (building Inception takes seconds)."""
    key = (weights, str(device))
    if key not in _EXTRACTORS:
        device = torch.device(device)
        # channels_last: 1.67x the images/s on CPU with FID within 1e-7 relative
        # (benchmarks/bench_fid.py); not yet measured on a GPU, so off there.
        with own_rng():  # building it draws initial weights: not from the run's stream
            _EXTRACTORS[key] = InceptionFeatures(weights, device,
                                                 channels_last=device.type == "cpu")
    return _EXTRACTORS[key]


def release_extractors() -> None:
    """Drop the cached extractors (the sweep driver, once it has made the statistics: it
    must not hold Inception on a device for the whole sweep)."""
    _EXTRACTORS.clear()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@dataclass
class FeatureStats:
    """Everything FID, KID and IS need from one image set."""

    features: np.ndarray  # N x 2048 float32
    logits: np.ndarray | None = None  # N x 1008 (generated images only: IS)

    @cached_property
    def inception_score(self) -> tuple[float, float]:
        """(mean, sd) of the Inception Score of these images' logits."""
        if self.logits is None:
            raise GansweepError("metric 'is' needs the generated images' Inception logits")
        return inception_score(self.logits)

    @cached_property
    def mu(self) -> np.ndarray:
        return np.mean(self.features, axis=0)

    @cached_property
    def sigma(self) -> np.ndarray:
        return np.cov(self.features, rowvar=False)


def stats_key(images_digest: str, extractor_identity: str) -> str:
    text = f"v{STATS_VERSION}|{images_digest}|{extractor_identity}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def real_stats(images: torch.Tensor, digest: str, extractor: InceptionFeatures,
               cache_dir: str | os.PathLike | None) -> FeatureStats:
    """Features of real images, cached under a hash of the preprocessed pixels and the
    extractor; computed once, written atomically, shared by every trial of a sweep."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"real-{stats_key(digest, extractor.identity)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                stats = FeatureStats(z["features"])
                stats.mu, stats.sigma = z["mu"], z["sigma"]  # fill the cached properties
                return stats
    stats = FeatureStats(extractor(images))
    if path is not None:
        atomic_write(path, lambda f: np.savez(f, features=stats.features, mu=stats.mu,
                                              sigma=stats.sigma))
    return stats


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


MetricFn = Callable[[Evaluation], float]
METRICS: Registry[MetricFn] = Registry("metric")
register_metric = METRICS.register
HIGHER_IS_BETTER = ("iw", "classifier", "is", "intra_lpips")


def worst_value(name: str) -> float:
    """What a diverged run or a non-finite value reports: +inf, or -inf where higher is
    better, so that schedulers rank it last."""
    return -math.inf if name in HIGHER_IS_BETTER else math.inf


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


def require_classifier(extractor: InceptionFeatures) -> None:
    """Refuse the Inception Score with weights whose classifier was removed."""
    if not extractor.has_classifier:
        raise GansweepError(f"Inception weights {extractor.weights}: fc is all zeros (FID-only "
                            f"weights), so the Inception Score cannot be computed; use "
                            f"weights with the classifier, e.g. pytorch-fid's download")


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al.): exp(E_x KL(p(y|x) || p(y))) on each of ``splits``
    consecutive chunks, (mean, population sd) over the chunks, in float64."""
    x = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    if len(x) < splits:
        raise GansweepError(f"metric 'is': {len(x)} images cannot make {splits} splits")
    log_p = x.log_softmax(dim=1)
    p, n = log_p.exp(), len(x)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        log_q = p[part].mean(dim=0).log()
        scores.append(math.exp(float((p[part] * (log_p[part] - log_q)).sum(dim=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


register_metric("fid")(lambda e: fid(e.real, e.fake))
register_metric("kid")(lambda e: kid(e.real, e.fake))


register_metric("is")(lambda e: e.fake.inception_score[0])


@register_metric("iw")
def _iw(e: Evaluation) -> float:
    if e.real_images is None or e.fake_images is None:
        raise GansweepError("metric 'iw' needs the real and generated images")
    return independent_wasserstein(e.real_images, e.fake_images, e.iw_steps, e.seed, e.device)


@register_metric("classifier")
def _classifier(e: Evaluation) -> float:
    if e.classifier is None or e.fake_images is None:
        raise GansweepError("metric 'classifier' needs a trained target classifier "
                            "(classifier_negatives)")
    return e.classifier.score(e.fake_images, e.fake_labels, e.device)


@register_metric("intra_lpips")
def _intra_lpips(e: Evaluation) -> float:
    if e.train_images is None or e.fake_images is None:
        raise GansweepError("metric 'intra_lpips' needs the generated and training images")
    net = load_lpips(resolve_lpips_weights(e.lpips_weights), str(e.device))
    return intra_lpips(net, e.fake_images, e.train_images)


def compute_metrics(evaluation: Evaluation, names: list[str]) -> dict[str, float]:
    """Named metrics; a non-finite value is reported as ``worst_value``."""
    out = {}
    for name in names:
        value = METRICS.get(name)(evaluation)
        out[name] = value if np.isfinite(value) else worst_value(name)
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
