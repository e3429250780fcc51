"""The configuration of one training run: ``TrainConfig``, validated on construction, and
the one place its defaults live (the CLI's and a sweep spec's defaults are read from it).
A transfer trial's config is made by ``core.trial.trial_config``."""
from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gansweep.core.augment import parse_augment
from gansweep.core.errors import GansweepError
from gansweep.core.losses import LOSSES, get_loss
from gansweep.core.lpips import resolve_lpips_weights
from gansweep.core.metrics import METRICS
from gansweep.core.models import ArchConfig
from gansweep.core.treatments import BN_STATS, TREATMENTS

# Seeds are numpy's and torch's: 32 bits is what both take everywhere (numpy's legacy
# seeding, the CUDA generator); a larger one is refused, not wrapped.
MAX_SEED = 2**32 - 1


def default_cache_dir() -> str:
    return os.environ.get("GANSWEEP_CACHE", str(Path.home() / ".cache" / "gansweep"))


@dataclass
class TrainConfig:
    """Everything that defines one training run. Validated on construction; every field
    error names the field and the bad value."""

    data: str
    out: str
    arch: ArchConfig = field(default_factory=ArchConfig)
    source: str | None = None  # checkpoint to transfer from; None = train from scratch
    g_plan: list[str] | None = None  # one treatment per unit; None = fine-tune all
    d_plan: list[str] | None = None
    # Units the source does not have ('G.rgb', ...): a transfer to a lower resolution
    # (models.cross_resolution); re-initialised, the rest loaded from the source.
    new_units: list[str] = field(default_factory=list)
    label: str = "run"
    loss: str = "wgan"
    lr: float | None = None  # None: the loss's default
    # Multiplier of lr per treatment (Denton: transferred layers fine-tuned more slowly than
    # re-initialised ones); treatments not named train at lr.
    lr_mult: dict[str, float] = field(default_factory=dict)
    label_smoothing: float = 0.0  # bce only: D's targets drawn from 1 +- s and 0 +- s
    label_noise: float = 0.0  # bce only: fraction of D's targets swapped
    r1_gamma: float | None = None  # stylegan2 loss only: R1 weight (None: 10)
    path_length: float = 0.0  # stylegan2 loss and generator only: path-length weight (0: off)
    n_critic: int | None = None  # None: the loss's default
    batch_size: int = 64
    iters: int = 1000
    eval_every: int = 0  # 0: evaluate only at the end
    eval_at_start: bool = False  # also evaluate iteration 0 (the source before training)
    fid_samples: int = 256
    fid_real: int | None = None  # cap on real reference images (deterministic subset)
    metrics: list[str] = field(default_factory=lambda: ["fid", "kid"])
    iw_steps: int = 300  # training steps of the independent critic, per evaluation
    classifier_negatives: str | None = None  # "other" images of the classifier metric
    classifier_steps: int = 300
    ac_weight: float = 1.0  # alpha_D = alpha_G of an AC head (Wang et al. eq. 7-8)
    target_size: int | None = None
    augment: str = "none"
    seed: int = 0
    bn_stats: str = "adapt"
    inception_weights: str | None = None
    lpips_weights: str | None = None  # intra_lpips (core.lpips); None: $GANSWEEP_LPIPS_WEIGHTS
    cache_dir: str | None = None  # real-data FID statistics; None: $GANSWEEP_CACHE or ~/.cache
    device: str = "auto"
    # Evaluate an EMA of G's weights (core.ema) with this half-life in thousands of images
    # (benchmarks/RESULTS.md section 4 measured it); None: evaluate G itself, as the papers do.
    ema_kimg: float | None = 10.0
    ema_rampup: float | None = 0.05  # the half-life is at most this fraction of images seen
    # At the first evaluation at or after each milestone (the scheduler's rungs), FID also on
    # this many generated images (``fid_rung``): a steadier number where decisions are made.
    rung_fid_samples: int | None = None
    rung_milestones: list[int] = field(default_factory=list)
    deterministic: bool = False  # deterministic GPU algorithms (core.numerics)
    # G's and D's forward and backward captured by torch.compile (core.train.capture):
    # reduce-overhead (CUDA graphs) on a GPU, fewer launches per step; not bit-identical.
    compile: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.arch, dict):
            self.arch = ArchConfig(**self.arch)
        LOSSES.get(self.loss)
        for name in ("label_smoothing", "label_noise"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not 0 <= value < 1:
                raise GansweepError(f"{name}: {value!r} must be a number in [0, 1)")
            if value and self.loss != "bce":
                raise GansweepError(f"{name}: {value!r} needs loss 'bce', not {self.loss!r}")
        if self.r1_gamma is not None:
            if not isinstance(self.r1_gamma, (int, float)) or isinstance(self.r1_gamma, bool) \
                    or not 0 <= self.r1_gamma < math.inf:  # nan, inf: no weight
                raise GansweepError(f"r1_gamma: {self.r1_gamma!r} must be a number >= 0")
            if self.loss != "stylegan2":
                raise GansweepError(f"r1_gamma: {self.r1_gamma!r} needs loss 'stylegan2', not "
                                    f"{self.loss!r}")
        if not isinstance(self.path_length, (int, float)) or isinstance(self.path_length, bool) \
                or not 0 <= self.path_length < math.inf:
            raise GansweepError(f"path_length: {self.path_length!r} must be a number >= 0")
        if self.path_length and (self.loss != "stylegan2" or self.arch.name != "stylegan2"):
            raise GansweepError(f"path_length: {self.path_length!r} needs loss and architecture "
                                f"'stylegan2', not {self.loss!r} and {self.arch.name!r}")
        if not isinstance(self.lr_mult, dict):
            raise GansweepError(f"lr_mult: {self.lr_mult!r} must map treatments to numbers")
        for name, value in self.lr_mult.items():
            if name not in TREATMENTS:
                raise GansweepError(f"lr_mult: unknown treatment {name!r}; valid: "
                                    f"{', '.join(sorted(TREATMENTS))}")
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not 0 < value < math.inf:
                raise GansweepError(f"lr_mult.{name}: {value!r} must be a positive number")
        parse_augment(self.augment)
        for name in self.metrics:
            METRICS.get(name)
        positive = {"batch_size": self.batch_size, "iters": self.iters,
                    "iw_steps": self.iw_steps, "classifier_steps": self.classifier_steps}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GansweepError(f"{name}: {value!r} must be a positive integer")
        # A feature covariance (FID, KID) needs two images on each side.
        for name in ("fid_samples", "fid_real"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 2):
                raise GansweepError(f"{name}: {value!r} must be an integer >= 2 (a feature "
                                    f"covariance needs two images)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) \
                or not 0 <= self.seed <= MAX_SEED:
            raise GansweepError(f"seed: {self.seed!r} must be an integer in [0, {MAX_SEED}]")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise GansweepError(f"eval_every: {self.eval_every!r} must be an integer >= 0")
        for name in ("target_size", "n_critic"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise GansweepError(f"{name}: {value!r} must be a positive integer or null")
        if self.lr is not None and not (isinstance(self.lr, (int, float))
                                        and 0 < self.lr < math.inf):
            raise GansweepError(f"lr: {self.lr!r} must be a positive number")
        if "intra_lpips" in self.metrics:
            resolve_lpips_weights(self.lpips_weights)  # one line before anything runs
        if "classifier" in self.metrics and self.classifier_negatives is None:
            raise GansweepError("classifier_negatives: the 'classifier' metric needs a folder "
                                "of images that are not the target (default: the source's "
                                "training data)")
        if not (isinstance(self.ac_weight, (int, float)) and self.ac_weight >= 0):
            raise GansweepError(f"ac_weight: {self.ac_weight!r} must be a number >= 0")
        if self.bn_stats not in BN_STATS:
            raise GansweepError(f"bn_stats: {self.bn_stats!r} is not one of {BN_STATS}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda")):
            raise GansweepError(f"device: {self.device!r} is not auto, cpu or cuda[:N]")
        for name in ("ema_kimg", "ema_rampup"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and not isinstance(value, bool)
                                          and 0 < value < math.inf):
                raise GansweepError(f"{name}: {value!r} must be a positive number or null")
        if self.rung_fid_samples is not None:
            if not isinstance(self.rung_fid_samples, int) or \
                    self.rung_fid_samples <= self.fid_samples:
                raise GansweepError(f"rung_fid_samples: {self.rung_fid_samples!r} must be an "
                                    f"integer larger than fid_samples ({self.fid_samples})")
            if "fid" not in self.metrics:
                raise GansweepError("rung_fid_samples: needs 'fid' among the metrics")
        for name in ("deterministic", "eval_at_start", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise GansweepError(f"{name}: {getattr(self, name)!r} is not true or false")
        if self.compile and get_loss(self.loss, r1_gamma=self.r1_gamma,
                                     path_length=self.path_length).double_backward:
            raise GansweepError(f"compile: true cannot capture loss {self.loss!r}: its penalty "
                                f"differentiates a gradient, which torch.compile does not "
                                f"support (compile: false, or r1_gamma and path_length 0)")
        if any(not isinstance(m, int) or m < 1 for m in self.rung_milestones):
            raise GansweepError(f"rung_milestones: {self.rung_milestones!r} must be positive "
                                f"integers")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default: what the CLI and a sweep spec use when it is not given."""
        f = cls.__dataclass_fields__[name]
        return f.default_factory() if f.default is MISSING else f.default

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GansweepError(f"unknown config field(s) {unknown}")
        return cls(**d)
