"""Inception features: pytorch-fid's FID Inception (core.inception) run on images, and the
statistics of an image set (features, mean, covariance, logits) that FID, KID and IS use;
real-data statistics cached under a hash of what produced them.

Weights: ``--inception-weights PATH`` or ``$GANSWEEP_INCEPTION_WEIGHTS`` (a state dict in
pytorch-fid's layout), else pytorch-fid's own download.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write, file_sha256
from gansweep.core.inception import FIDInception, download_name, download_weights
from gansweep.core.numerics import fp32_features, own_rng
from gansweep.core.progress import Progress
from gansweep.core.torch_files import load_torch_file

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
    state = load_torch_file(weights, "Inception weights")
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
            self.identity = f"pytorch-fid-pool3:{download_name()}"
        else:
            state = _state_from_file(weights)
            self.identity = "pytorch-fid-pool3:sha256=" + file_sha256(weights)
        try:
            model = FIDInception(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise GansweepError(f"Inception weights {weights}: do not fit pytorch-fid's FID "
                                f"Inception ({' '.join(first[:2])[:200]})") from None
        self.weights = weights or download_name()
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


def check_weights(path: str | None) -> None:
    """The FID weights ``path`` resolves to load as pytorch-fid's Inception, or one line says
    why: a launch and the demo check them before anything is written or trained."""
    weights = resolve_weights(path)
    if weights is not None:
        with own_rng():
            InceptionFeatures(weights, torch.device("cpu"))


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
               cache_dir: str | os.PathLike | None,
               machine_dir: str | os.PathLike | None = None) -> FeatureStats:
    """Features of real images, cached under a hash of the preprocessed pixels and the
    extractor; computed once, written atomically, shared by every trial of a sweep.
    ``machine_dir``, a second cache (the machine's), is looked in when ``cache_dir`` lacks
    them and filled when they are computed: a target's statistics are computed once per
    machine, not once per sweep."""
    name = f"real-{stats_key(digest, extractor.identity)}.npz"
    paths = [Path(d) / name for d in (cache_dir, machine_dir) if d is not None]
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        stats = FeatureStats(extractor(images))
    else:
        with np.load(found, allow_pickle=False) as z:
            stats = FeatureStats(z["features"])
            stats.mu, stats.sigma = z["mu"], z["sigma"]  # fill the cached properties
    for path in paths[:paths.index(found)] if found else paths:
        atomic_write(path, lambda f: np.savez(f, features=stats.features, mu=stats.mu,
                                              sigma=stats.sigma))
    return stats


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
