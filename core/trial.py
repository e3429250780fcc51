"""A trial and the one function that turns it into a run's ``TrainConfig``.

A ``Trial`` is one setting (a partition pair, a baseline, a per-unit plan, or none: training
from scratch, which is pretraining) on one target with one seed. A ``TrialTemplate`` is
what the trials of a sweep (or of one command) share: the ``TrainConfig`` fields that are
not a trial's own, each source's metadata (read once), the target resolution, and the
architecture of a run without a source. ``trial_config(template, trial)`` is the only place
a run's config is made: the sweep driver's trials, its spec validation, ``gansweep
transfer``, ``gansweep pretrain`` and the demo all call it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from gansweep.core.checkpoint import SourceInfo, check_source, read_source
from gansweep.core.config import TrainConfig
from gansweep.core.data import class_names
from gansweep.core.errors import GansweepError
from gansweep.core.models import COND_HEADS, ArchConfig, cross_resolution, unit_counts, unit_names
from gansweep.core.treatments import (
    TREATMENTS,
    PlanPair,
    baseline_pair,
    check_modulation,
    check_plan,
    parse_partition,
    partition_pair,
    plans_label,
)

INITS = ("pretrained", "scratch")


@dataclass(frozen=True)
class Trial:
    """One trial's settings; ``to_dict`` is what Ray Tune carries and the records keep."""

    label: str
    source: str | None
    target: str
    d: str | None = None
    g: str | None = None
    baseline: str | None = None
    modulation: str = "adafm"
    freeze_d_depth: int | None = None
    target_size: int | None = None
    augment: str = "none"
    loss: str | None = None  # None: the source's pretraining loss
    lr: float | None = None  # None: the loss's default
    g_init: str = "pretrained"
    d_init: str = "pretrained"
    seed: int = 0
    g_plan: list[str] | None = None  # explicit per-unit plans (``plans:`` in a spec)
    d_plan: list[str] | None = None
    family: str | None = None  # forward | backward, for Denton et al.'s plan families
    family_mode: str | None = None  # freeze | finetune
    family_n: int | None = None  # units transferred
    conditional: str | None = None  # class head (projection | ac) of a conditional transfer
    phase: str = "search"  # search | confirm
    index: int = 0  # the trial's place in its phase's grid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        """A recorded trial; one recorded before a field existed gets its default."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise GansweepError(f"trial: unknown field(s) {unknown}")
        return cls(**data)

    @property
    def setting_key(self) -> str:
        """What the trial's setting is: every field but its seed, phase and grid index, as
        sorted JSON. Trials with the same key differ only by seed."""
        return setting_key(self.to_dict())


SETTING_EXCLUDES = ("seed", "phase", "index")


def setting_key(trial: dict[str, Any]) -> str:
    """``Trial.setting_key`` of a recorded trial dict (one recorded before a field existed
    has the same key as it would have with that field's default)."""
    full = Trial.from_dict(trial).to_dict()
    return json.dumps({k: v for k, v in full.items() if k not in SETTING_EXCLUDES},
                      sort_keys=True)


# TrainConfig fields a trial (or the call) sets; every other field is the template's.
TRIAL_FIELDS = ("data", "out", "arch", "source", "g_plan", "d_plan", "new_units", "label",
                "loss", "lr", "target_size", "augment", "seed", "device")


@dataclass(frozen=True)
class TrialTemplate:
    """What the trials of a sweep share (see the module's docstring)."""

    options: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields but TRIAL_FIELDS
    sources: dict[str, SourceInfo] = field(default_factory=dict)  # path -> metadata
    resolution: int | None = None  # the target resolution (None: the source's)
    arch: ArchConfig | None = None  # for a run without a source (pretraining)

    def __post_init__(self) -> None:
        known = {f.name for f in fields(TrainConfig)} - set(TRIAL_FIELDS)
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise GansweepError(f"trial template: {unknown} are not shared TrainConfig fields")

    @classmethod
    def read(cls, sources: Sequence[str], **kwargs: Any) -> TrialTemplate:
        """A template whose sources' metadata is read now, once each."""
        return cls(sources={s: read_source(s) for s in dict.fromkeys(sources)}, **kwargs)

    def with_options(self, **options: Any) -> TrialTemplate:
        return replace(self, options={**self.options, **options})

    def to_dict(self) -> dict[str, Any]:
        return {"options": self.options,
                "sources": {k: v.to_dict() for k, v in self.sources.items()},
                "resolution": self.resolution,
                "arch": None if self.arch is None else self.arch.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialTemplate:
        return cls(dict(data["options"]),
                   {k: SourceInfo.from_dict(v) for k, v in data["sources"].items()},
                   data["resolution"],
                   None if data["arch"] is None else ArchConfig(**data["arch"]))


def trial_config(template: TrialTemplate, trial: Trial, out: str = "",
                 device: str = "auto") -> TrainConfig:
    """The ``TrainConfig`` of one trial: its treatments from its partition pair, baseline or
    plans (none: train from scratch, as pretraining does); ``g_init``/``d_init = scratch``
    re-initialises that whole network (it must be fully fine-tuned); a conditional trial
    makes both networks class-conditional, one class per sub-folder of its target; a
    target resolution below the source's re-initialises the units the cut adds
    (``new_units``). Unset settings default to the source's: its loss, and the classifier
    metric's negatives (its training images)."""
    info = template.sources[trial.source] if trial.source is not None else None
    arch, new_units = _arch(template, info, trial)
    if info is not None:
        check_source(info, arch, new_units)
    g_plan, d_plan, label = _plans(trial, arch, new_units)
    options = dict(template.options)
    shared = {k: options.get(k, TrainConfig.default(k))
              for k in ("metrics", "classifier_negatives")}
    if "classifier" in shared["metrics"] and shared["classifier_negatives"] is None \
            and info is not None:
        if info.data is None:
            raise GansweepError(f"classifier_negatives: the source {info.path} records no "
                                f"training data (imported); give the classifier's negatives")
        options["classifier_negatives"] = info.data
    loss = trial.loss or (info.loss if info is not None else None)
    return TrainConfig(data=trial.target, out=out, arch=arch, source=trial.source,
                       g_plan=g_plan, d_plan=d_plan, new_units=new_units, label=label,
                       lr=trial.lr, target_size=trial.target_size, augment=trial.augment,
                       seed=trial.seed, device=device, **({"loss": loss} if loss else {}),
                       **options)


def _arch(template: TrialTemplate, info: SourceInfo | None,
          trial: Trial) -> tuple[ArchConfig, list[str]]:
    """The trial's architecture (the source's, cut to the target resolution, made
    conditional) and the units the cut adds."""
    if info is None:
        if template.arch is None:
            raise GansweepError("arch: a run without a source needs the architecture")
        arch, new_units = template.arch, []
    else:
        arch, new_units = info.arch, []
        if template.resolution is not None and template.resolution != arch.resolution:
            arch, new_units = cross_resolution(arch, template.resolution)
    if trial.conditional is not None:
        if trial.conditional not in COND_HEADS:
            raise GansweepError(f"conditional: {trial.conditional!r} is not one of {COND_HEADS}")
        arch = replace(arch, num_classes=len(class_names(trial.target)),
                       cond_head=trial.conditional)
    return arch, new_units


def _setting(trial: Trial, ld: int, lg: int) -> PlanPair | None:
    """The trial's plans as given: its baseline, partition pair or per-unit plans; None
    for training from scratch without a source."""
    given = [x for x in (trial.baseline, trial.d or trial.g, trial.g_plan) if x is not None]
    if trial.source is None and not given:
        return None
    if len(given) != 1:
        raise GansweepError("give one of: a baseline, D/G partitions, or per-unit plans")
    check_modulation(trial.modulation)
    if trial.baseline is not None:
        return baseline_pair(trial.baseline, ld, lg, trial.modulation, trial.freeze_d_depth)
    if trial.g_plan is not None:
        if trial.d_plan is None:
            raise GansweepError("d_plan: per-unit plans need one for D too")
        plans = (check_plan(trial.g_plan, lg, "g_plan"), check_plan(trial.d_plan, ld, "d_plan"))
        return PlanPair(*plans, plans_label(plans))
    if trial.d is None or trial.g is None:
        raise GansweepError("give both a D partition and a G partition, or a baseline")
    return partition_pair(parse_partition(trial.d, ld, "D"), parse_partition(trial.g, lg, "G"),
                          trial.modulation)


def _plans(trial: Trial, arch: ArchConfig,
           new_units: list[str]) -> tuple[list[str] | None, list[str] | None, str]:
    """G's and D's plans (None: fine-tune every unit of fresh networks) and the label."""
    lg, ld = unit_counts(arch)
    pair = _setting(trial, ld, lg)
    if pair is None:
        return None, None, trial.label or "run"
    plans = {"g": list(pair.g_plan), "d": list(pair.d_plan)}
    for net, init in (("g", trial.g_init), ("d", trial.d_init)):
        if init not in INITS:
            raise GansweepError(f"{net}_init: {init!r} is not one of {INITS}")
        if init == "scratch":
            if not all(TREATMENTS.get(t).trains_all for t in plans[net]):
                raise GansweepError(f"{net}_init: 'scratch' needs {net.upper()} fully "
                                    f"fine-tuned, but {pair.label} freezes or modulates it")
            plans[net] = ["reinit"] * len(plans[net])
    g_names, d_names = unit_names(arch)
    for net, names in (("g", g_names), ("d", d_names)):
        plans[net] = ["reinit" if f"{net.upper()}.{n}" in new_units else t
                      for n, t in zip(names, plans[net])]
    return plans["g"], plans["d"], trial.label or pair.label


def transfer_config(source: str, data: str, out: str, *, d: str | None = None,
                    g: str | None = None, baseline: str | None = None,
                    plans: tuple[Sequence[str], Sequence[str]] | None = None,
                    expect_arch: str | None = None, resolution: int | None = None,
                    device: str = "auto", **settings: Any) -> TrainConfig:
    """One transfer's config from keyword arguments (``gansweep transfer`` and the tests):
    ``settings`` are Trial fields (modulation, seed, loss, ...) and shared TrainConfig
    fields (iters, metrics, ...). ``expect_arch`` refuses a source of another
    architecture. Made by ``trial_config``."""
    trial_fields = {f.name for f in fields(Trial)}
    template = TrialTemplate.read([source], resolution=resolution, options={
        k: v for k, v in settings.items() if k not in trial_fields})
    info = template.sources[source]
    if expect_arch is not None and expect_arch != info.arch.name:
        raise GansweepError(f"checkpoint {source}: architecture is {info.arch.name!r}, expected "
                            f"{expect_arch!r}")
    g_plan, d_plan = (list(plans[0]), list(plans[1])) if plans is not None else (None, None)
    trial = Trial(label="", source=source, target=data, d=d, g=g, baseline=baseline,
                  g_plan=g_plan, d_plan=d_plan,
                  **{k: v for k, v in settings.items() if k in trial_fields})
    return trial_config(template, trial, out, device)
