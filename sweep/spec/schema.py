"""A sweep spec's typed sections and the validated ``SweepSpec``. Defaults of the fields a
run also has are ``TrainConfig``'s (``core.config``): they live there only. What the YAML may say
and how it is checked is ``sweep.spec.validate``; what the spec expands to, ``sweep.spec.grid``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from gansweep.core.config import TrainConfig
from gansweep.core.models import ArchConfig
from gansweep.core.registry import Registry
from gansweep.core.trial import Trial, TrialTemplate
from gansweep.sweep.spec.grid import expand
from gansweep.sweep.spec.ranking import ScoreRule

default = TrainConfig.default


@dataclass(frozen=True)
class Budget:
    iters: int
    eval_every: int
    fid_samples: int = default("fid_samples")
    batch_size: int = default("batch_size")
    fid_real: int | None = default("fid_real")
    eval_at_start: bool = default("eval_at_start")  # also evaluate iteration 0


@dataclass(frozen=True)
class Training:
    """Optimiser and loss options shared by every trial (TrainConfig's fields)."""

    lr_mult: dict = field(default_factory=dict)  # treatment -> multiplier of lr
    label_smoothing: float = default("label_smoothing")  # loss 'bce' only
    label_noise: float = default("label_noise")  # loss 'bce' only
    r1_gamma: float | None = default("r1_gamma")  # loss 'stylegan2' only (None: 10)
    path_length: float = default("path_length")  # loss and arch 'stylegan2' only (0: off)
    n_critic: int | None = default("n_critic")  # critic steps per G step (None: the loss's)
    compile: bool = default("compile")  # torch.compile the step (core.train.capture)


@dataclass(frozen=True)
class Scheduler:
    """ASHA's rungs and what it decides on (sweep.spec.ranking): a trial's ``score`` is a rule
    over its evaluations; with ``noise`` = k > 0 a trial is stopped at a rung only when its
    score is worse than the rung's cutoff by more than k times its sampling sd."""

    type: str = "asha"  # asha | none
    grace_period: int = 1
    reduction_factor: float = 3.0
    score: str = "last"  # last | mean | best: the rule of ScoreRule
    window: int = 1  # evaluations the 'mean' rule averages
    noise: float = 0.0  # k: the stopping margin in sampling sds (0: stop on any deficit)
    rung_fid_samples: int | None = None  # FID on this many samples at the rungs

    @property
    def rule(self) -> ScoreRule:
        return ScoreRule(self.score, self.window)

    def milestones(self, max_t: int) -> list[int]:
        """The iterations at which ASHA decides (Ray's rungs: grace * rf^k up to max_t)."""
        out, t = [], float(self.grace_period)
        while t <= max_t:
            out.append(math.ceil(t))
            t *= self.reduction_factor
        return out


@dataclass(frozen=True)
class Search:
    """Which trials of the search run (``sweep.searchers.structured``): every one (``grid``), or the
    baselines, a design covering every D and G partition and then the pairs a model of the
    partition effects expects most of (``structured``), up to ``max_pairs`` pairs or
    ``fraction`` of the grid's pairs per context (a chosen pair runs on every search seed),
    or until no pair's expected improvement exceeds ``stop`` times one trial's noise sd.
    ``seed`` draws the design. After its pairs, the search reruns its ``confirm_top`` best
    candidates (0: none) on ``confirm_seeds`` further seeds and picks on the mean over all
    their seeds (``sweep.searchers.structured``; the spec's ``confirm:``, when given, is the
    confirmation instead)."""

    type: str = "grid"  # SEARCHES
    max_pairs: int | None = None
    fraction: float | None = None
    stop: float | None = None
    seed: int = 0
    confirm_top: int = 2
    confirm_seeds: int = 1

    @property
    def confirms(self) -> bool:
        """A structured search with its own confirmation (``confirm_top`` > 0)."""
        return self.type == "structured" and self.confirm_top > 0

    def budget(self, pairs: int) -> int:
        """How many of a context's ``pairs`` the structured search may choose."""
        if self.max_pairs is not None:
            return min(self.max_pairs, pairs)
        fraction = DEFAULT_FRACTION if self.fraction is None else self.fraction
        return min(pairs, math.ceil(fraction * pairs - 1e-9))


# The structured search's default budget: a quarter of the grid's pairs (the goal is
# a quarter of the grid's compute; baselines and ASHA move the figure either way).
DEFAULT_FRACTION = 0.25


@dataclass(frozen=True)
class SearchKind:
    """A ``search.type``: whether it chooses which trials run (else Tune's grid runs every
    one) and whether it needs a grid of D x G partition pairs without per-unit plans."""

    name: str
    chooses: bool
    needs_pairs: bool


SEARCHES: Registry[SearchKind] = Registry("search type")
for _kind in (SearchKind("grid", chooses=False, needs_pairs=False),  # Tune's grid: every trial
              SearchKind("structured", chooses=True, needs_pairs=True)):  # sweep.searchers
    SEARCHES.register(_kind.name)(_kind)


@dataclass(frozen=True)
class Confirm:
    """The confirmation phase: the ``top`` settings of the search and every baseline, rerun
    to the full budget on fresh ``seeds``."""

    top: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass
class SweepSpec:
    """A validated sweep spec (``sweep.spec.validate.parse_spec``)."""

    name: str
    sources: list[str | None]
    targets: list[str]
    arch: ArchConfig | None
    pairs: list[tuple[str, str]]
    baselines: list[str]
    plans: list[dict[str, Any]]  # label, g_plan, d_plan, family, family_mode, family_n
    axes: dict[str, list]
    budget: Budget
    scheduler: Scheduler
    metric: str
    metrics: list[str]
    resources: Resources
    training: Training = field(default_factory=Training)
    modulation: str = "adafm"
    freeze_d_depth: int | None = None
    bn_stats: str = default("bn_stats")
    deterministic: bool = default("deterministic")  # deterministic GPU algorithms
    ema_kimg: float | None = default("ema_kimg")  # the EMA generator's half-life (None: G)
    ema_rampup: float | None = default("ema_rampup")
    confirm: Confirm | None = None
    search: Search = field(default_factory=Search)
    max_concurrent: int = 0
    max_failures: int = 2
    trackers: list[str] = field(default_factory=list)  # sweep.spec.trackers
    inception_weights: str | None = None
    lpips_weights: str | None = None  # intra_lpips (core.lpips)
    iw_steps: int = default("iw_steps")
    classifier_steps: int = default("classifier_steps")
    classifier_negatives: str | None = None  # default: the first source's training data
    problems: list[str] = field(default_factory=list)  # missing files (fatal unless dry run)
    raw: dict[str, Any] = field(default_factory=dict)  # the spec with paths made absolute
    # What every trial shares, its sources read once (None when they were not read: a
    # recorded spec, whose template is in the sweep's grid file).
    template: TrialTemplate | None = None

    def trials(self) -> list[Trial]:
        """The search grid (``sweep.spec.grid.expand``)."""
        return expand(self)

    @property
    def confirms(self) -> bool:
        """Whether the sweep has a confirmation phase: its ``confirm:`` section, or the
        structured search's own (``Search.confirms``)."""
        return self.confirm is not None or self.search.confirms

    def settings(self) -> list[str]:
        """The distinct settings of the search: its trials up to the seed."""
        return list(dict.fromkeys(t.setting_key for t in self.trials()))

    def options(self) -> dict[str, Any]:
        """The TrainConfig fields every trial of the search shares, as the spec gives them."""
        rung = self.scheduler.rung_fid_samples
        return {**asdict(self.budget), **asdict(self.training), "metrics": self.metrics,
                "iw_steps": self.iw_steps, "classifier_steps": self.classifier_steps,
                "classifier_negatives": self.classifier_negatives, "bn_stats": self.bn_stats,
                "inception_weights": self.inception_weights,
                "lpips_weights": self.lpips_weights, "ema_kimg": self.ema_kimg,
                "ema_rampup": self.ema_rampup, "deterministic": self.deterministic,
                "rung_fid_samples": rung,
                "rung_milestones": self.scheduler.milestones(self.budget.iters) if rung else []}
