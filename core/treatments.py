"""Per-unit transfer treatments, D(i,j,k)/G(i,j,k) partitions and the baseline presets.

What each treatment does to a unit's parameters, biases and normalisation:

============  ====================  ==============  ======================  =====================
treatment     conv/linear weight    bias            norm affine             norm statistics
============  ====================  ==============  ======================  =====================
finetune      trained               trained         trained                 batch stats, tracked
reinit        re-initialised,       re-initialised, reset, trained          reset, tracked
              trained               trained
freeze        fixed                 fixed           fixed                   tracked (default) or
                                                                            fixed (bn_stats=fixed)
adafm         fixed W; trained      fixed           fixed                   tracked
              gamma, beta (out x in
              x 1 x 1; out x 1 for
              linear): W' = g*W + b
filter-shift  fixed                 fixed           fixed                   tracked
              (+ trained per-channel gamma, beta on every pre-activation map)
============  ====================  ==============  ======================  =====================

A class-conditional network's per-class parameters (``ClassTable``: G's per-class batch-norm
scale and shift, D's projection embedding or auxiliary classifier) are trained whatever
their unit's treatment: they are what the conditional transfer has to learn, and frozen at
their initial values they would leave the network blind to the class.

"Tracked" means batch statistics are used in training and running statistics keep
updating: the units before a frozen or modulated one change what it sees, so its source
statistics no longer describe its input. ``bn_stats="fixed"`` keeps frozen units' norm
layers in eval mode on the source statistics instead (timm's FrozenBatchNorm behaviour).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from gansweep.core.errors import GansweepError
from gansweep.core.models import ArchConfig, ClassTable, FilterShift, TransferNet, build_models
from gansweep.core.registry import Registry
from gansweep.core.sngan import SpectralNorm
from gansweep.core.stylegan2_layers import EqualizedLayer

WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, EqualizedLayer)
NORM_LAYERS = (nn.BatchNorm2d, nn.GroupNorm)
BN_STATS = ("adapt", "fixed")

Plan = tuple[str, ...]


@dataclass(frozen=True)
class Treatment:
    """What a treatment does to a unit (``apply``), and its facts: its ``letter`` in plan
    labels, whether it ``modulates`` (a scale and shift of frozen weights: what the j of a
    partition can mean), and whether it ``trains_all`` of the unit's parameters (what a
    network initialised from scratch allows)."""

    name: str
    letter: str
    apply: Callable[[TransferNet, nn.Module], None]
    modulates: bool = False
    trains_all: bool = False


TREATMENTS: Registry[Treatment] = Registry("treatment")


def register_treatment(name: str, letter: str, *, modulates: bool = False,
                       trains_all: bool = False):
    def deco(fn: Callable[[TransferNet, nn.Module], None]):
        TREATMENTS.register(name)(Treatment(name, letter, fn, modulates, trains_all))
        return fn
    return deco


class AdaFM(nn.Module):
    """Weight parametrization W' = gamma * W + beta, one gamma/beta per 2-D kernel.

    gamma, beta have shape out x in x 1 x 1 for convolutions (ConvTranspose2d stores its
    kernel as in x out x kh x kw, so they are transposed to match), out x 1 for linear, and
    1 x out x in x 1 x 1 for a StyleGAN2 modulated convolution's base kernel (1 x out x in x
    kh x kw, before its style and demodulation: core.stylegan2).
    """

    def __init__(self, weight: torch.Tensor, transposed: bool):
        super().__init__()
        self.transposed = transposed
        if weight.dim() == 2:
            shape: tuple[int, ...] = (weight.shape[0], 1)
        elif weight.dim() == 5:
            shape = (1, weight.shape[1], weight.shape[2], 1, 1)
        else:
            out_c, in_c = (weight.shape[1], weight.shape[0]) if transposed else weight.shape[:2]
            shape = (out_c, in_c) + (1,) * (weight.dim() - 2)
        self.gamma = nn.Parameter(torch.ones(shape, device=weight.device))
        self.beta = nn.Parameter(torch.zeros(shape, device=weight.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma, self.beta
        if self.transposed:
            gamma, beta = gamma.transpose(0, 1), beta.transpose(0, 1)
        return weight * gamma + beta


def _set_trainable(unit: nn.Module, flag: bool) -> None:
    for p in unit.parameters():
        p.requires_grad_(flag)


@register_treatment("finetune", "T", trains_all=True)
def finetune(net: TransferNet, unit: nn.Module) -> None:
    _set_trainable(unit, True)


@register_treatment("reinit", "R", trains_all=True)
def reinit(net: TransferNet, unit: nn.Module) -> None:
    net.reset_unit(unit)
    _set_trainable(unit, True)


@register_treatment("freeze", "F")
def freeze(net: TransferNet, unit: nn.Module) -> None:
    _set_trainable(unit, False)


@register_treatment("adafm", "A", modulates=True)
def adafm(net: TransferNet, unit: nn.Module) -> None:
    _set_trainable(unit, False)
    for m in list(unit.modules()):
        if isinstance(m, WEIGHT_LAYERS):
            # A spectrally normalised layer is modulated before its normalisation (core.sngan).
            name = "weight_orig" if isinstance(m, SpectralNorm) else "weight"
            parametrize.register_parametrization(
                m, name, AdaFM(getattr(m, name), isinstance(m, nn.ConvTranspose2d)))
            getattr(m.parametrizations, name).original.requires_grad_(False)


@register_treatment("filter-shift", "S", modulates=True)
def filter_shift(net: TransferNet, unit: nn.Module) -> None:
    _set_trainable(unit, False)
    device = next(unit.parameters()).device
    slots = [m for m in unit.modules() if isinstance(m, FilterShift)]
    if not slots:
        raise GansweepError(f"filter-shift: the unit {type(unit).__name__} has no FilterShift "
                            f"slot (every transfer unit must mark its feature maps)")
    for slot in slots:
        slot.enable(device)


def apply_plan(net: TransferNet, plan: Sequence[str], bn_stats: str = "adapt") -> None:
    """Apply one treatment per transfer unit, in unit order. Call once, on a fresh net."""
    if len(plan) != net.num_units:
        raise GansweepError(f"plan {list(plan)} has {len(plan)} treatments; the network has "
                            f"{net.num_units} units {[n for n, _ in net.transfer_units]}")
    if bn_stats not in BN_STATS:
        raise GansweepError(f"bn_stats: {bn_stats!r} is not one of {BN_STATS}")
    treatments = [TREATMENTS.get(t) for t in plan]
    for (_, unit), treatment, name in zip(net.transfer_units, treatments, plan):
        treatment.apply(net, unit)
        if name == "freeze" and bn_stats == "fixed":
            for m in unit.modules():
                if isinstance(m, NORM_LAYERS):
                    m.frozen_stats = True
    for m in net.modules():
        if isinstance(m, ClassTable):
            m.requires_grad_(True)
    net.train(net.training)


def trainable_parameters(net: nn.Module) -> list[nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]


def param_groups(net: TransferNet, plan: Sequence[str], lr: float,
                 lr_mult: dict[str, float]) -> list[dict]:
    """The optimiser's parameter groups: without ``lr_mult``, one group at ``lr``; with it,
    one group per treatment (in plan order) at ``lr`` times that treatment's multiplier
    (1 if not named), each group tagged with its ``treatment``. Class tables, trained
    whatever their unit's treatment, train at ``lr`` (group ``other``)."""
    params = trainable_parameters(net)
    if not lr_mult:
        return [{"params": params, "lr": lr}] if params else []
    other = {id(p) for m in net.modules() if isinstance(m, ClassTable) for p in m.parameters()}
    owner: dict[int, str] = {}
    for (_, unit), treatment in zip(net.transfer_units, plan):
        for p in unit.parameters():
            owner.setdefault(id(p), "other" if id(p) in other else treatment)
    groups: dict[str, list[nn.Parameter]] = {}
    for p in params:
        groups.setdefault(owner.get(id(p), "other"), []).append(p)
    return [{"params": ps, "lr": lr * lr_mult.get(t, 1.0), "treatment": t}
            for t, ps in groups.items()]


def count_trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in trainable_parameters(net))


def count_trainable_for_plans(arch: ArchConfig, g_plan: Sequence[str],
                              d_plan: Sequence[str]) -> tuple[int, int]:
    """Trainable parameters of (G, D) under the plans, without allocating real weights."""
    with torch.device("meta"):
        g, d = build_models(arch)
        apply_plan(g, g_plan)
        apply_plan(d, d_plan)
    return count_trainable(g), count_trainable(d)


# --- partitions --------------------------------------------------------------------------

_PARTITION_RE = re.compile(r"^\s*([DG])\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*$")


@dataclass(frozen=True)
class Partition:
    """D(i,j,k) or G(i,j,k): i frozen, j modulated, k fine-tuned units (as the README defines them).

    D is frozen from its input side, G from its output side; both are fine-tuned at their
    domain-specific end.
    """

    net: str
    i: int
    j: int
    k: int

    def __str__(self) -> str:
        return f"{self.net}({self.i},{self.j},{self.k})"

    @property
    def units(self) -> int:
        return self.i + self.j + self.k

    @classmethod
    def parse(cls, text: str) -> Partition:
        """A recorded ``D(i,j,k)``/``G(i,j,k)``, its L taken as i + j + k."""
        which, i, j, k = _match(text, "i+j+k = L")
        return parse_partition(text, i + j + k, which)

    def plan(self, modulation: str = "adafm") -> Plan:
        """One treatment per unit, with ``modulation`` (a modulating treatment) for j."""
        if self.net == "D":
            return ("freeze",) * self.i + (modulation,) * self.j + ("finetune",) * self.k
        return ("finetune",) * self.k + (modulation,) * self.j + ("freeze",) * self.i


def _match(text: str, sum_is: str) -> tuple[str, int, int, int]:
    """The one reading of partition text: its net and counts, or one line naming it."""
    m = _PARTITION_RE.match(str(text))
    if not m:
        raise GansweepError(f"partition {text!r} is malformed: expected D(i,j,k) or G(i,j,k) "
                            f"with {sum_is}")
    return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))


def parse_partition(text: str, units: int, net: str | None = None) -> Partition:
    """Parse 'D(i,j,k)' / 'G(i,j,k)' for a network of ``units`` units; errors name both."""
    which, i, j, k = _match(text, f"i+j+k = L = {units}")
    if net is not None and which != net:
        raise GansweepError(f"partition {text!r} is for {which}, expected a {net} partition "
                            f"(L = {units})")
    if min(i, j, k) < 0:
        raise GansweepError(f"partition {text!r} has a negative count (L = {units})")
    if i + j + k != units:
        raise GansweepError(f"partition {text!r} sums to {i + j + k}, but the network has "
                            f"L = {units} units")
    return Partition(which, i, j, k)


def enumerate_partitions(net: str, units: int) -> list[Partition]:
    """All (L+1)(L+2)/2 partitions of a network of L units, ordered by i then j."""
    if net not in ("D", "G"):
        raise GansweepError(f"net {net!r} is not 'D' or 'G'")
    return [Partition(net, i, j, units - i - j)
            for i in range(units + 1) for j in range(units - i + 1)]


def in_order(partitions: Iterable[str]) -> list[str]:
    """Partitions of one network in ``enumerate_partitions``' order: the one order of rows."""
    names = set(partitions)
    first = Partition.parse(next(iter(names)))
    return [str(p) for p in enumerate_partitions(first.net, first.units) if str(p) in names]


# --- explicit per-unit plans and Denton et al.'s plan families ------------------------------

def check_plan(plan: Sequence[str], units: int, where: str) -> Plan:
    """A per-unit plan given by hand: one registered treatment per unit."""
    if isinstance(plan, str) or len(plan) != units:
        raise GansweepError(f"{where}: {plan!r} must list one treatment per unit "
                            f"(L = {units})")
    for t in plan:
        TREATMENTS.get(t)
    return tuple(plan)


def plans_label(plans: tuple[Sequence[str], Sequence[str]]) -> str:
    """``G[TTAAF]D[RRRRR]``: one letter per unit (each treatment's registered letter), in
    each network's unit order."""
    g, d = ("".join(TREATMENTS.get(t).letter for t in p) for p in plans)
    return f"G[{g}]D[{d}]"


def modulations() -> tuple[str, ...]:
    """The treatments a partition's j can mean (``modulation``)."""
    return tuple(t for t in TREATMENTS if TREATMENTS.get(t).modulates)


def check_modulation(name: str) -> str:
    if name not in modulations():
        raise GansweepError(f"modulation: {name!r} is not one of {modulations()}")
    return name


PLAN_FAMILIES = ("forward", "backward")
FAMILY_MODES = ("freeze", "finetune")


def family_plan(family: str, mode: str, n: int, units: int) -> Plan:
    """Denton et al.'s transfer families for G: *forward* transfers the first n units (from
    the latent input), *backward* the last n (at the image end); transferred units are
    frozen or fine-tuned, the others re-initialised."""
    if family not in PLAN_FAMILIES:
        raise GansweepError(f"family: {family!r} is not one of {PLAN_FAMILIES}")
    if mode not in FAMILY_MODES:
        raise GansweepError(f"mode: {mode!r} is not one of {FAMILY_MODES}")
    if not 1 <= n <= units:
        raise GansweepError(f"n: {n!r} must be between 1 and L = {units}")
    kept = range(n) if family == "forward" else range(units - n, units)
    return tuple(mode if u in kept else "reinit" for u in range(units))


# --- baselines ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanPair:
    """A complete transfer setting: a plan for G and one for D, with a display label."""

    g_plan: Plan
    d_plan: Plan
    label: str
    g_partition: Partition | None = None
    d_partition: Partition | None = None
    baseline: str | None = None


def partition_pair(d: Partition, g: Partition, modulation: str = "adafm") -> PlanPair:
    return PlanPair(g.plan(modulation), d.plan(modulation), f"{d}{g}", g, d)


BASELINES: Registry[Callable[[int, int, int | None], tuple[Partition, Partition] | None]] = \
    Registry("baseline")


def default_frozen(units: int) -> int:
    """Units frozen by the 'freeze' and 'freeze-d' presets: all but the two domain-specific
    ones (3 at the dissertation's L = 5), never fewer than 0."""
    return max(units - 2, 0)


@BASELINES.register("fine-tune")
def _fine_tune(ld: int, lg: int, depth: int | None):
    return Partition("D", 0, 0, ld), Partition("G", 0, 0, lg)


@BASELINES.register("freeze")
def _freeze(ld: int, lg: int, depth: int | None):
    nd, ng = default_frozen(ld), default_frozen(lg)
    return Partition("D", nd, 0, ld - nd), Partition("G", ng, 0, lg - ng)


@BASELINES.register("scale-shift")
def _scale_shift(ld: int, lg: int, depth: int | None):
    return Partition("D", 0, ld, 0), Partition("G", 0, lg, 0)


@BASELINES.register("freeze-d")
def _freeze_d(ld: int, lg: int, depth: int | None):
    n = default_frozen(ld) if depth is None else depth
    if not 0 <= n <= ld:
        raise GansweepError(f"freeze_d_depth: {depth!r} must be between 0 and L = {ld}")
    return Partition("D", n, 0, ld - n), Partition("G", 0, 0, lg)


@BASELINES.register("scratch")
def _scratch(ld: int, lg: int, depth: int | None):
    return None  # random initialisation, everything trained: no partition applies


def baseline_pair(name: str, d_units: int, g_units: int, modulation: str = "adafm",
                  freeze_d_depth: int | None = None) -> PlanPair:
    """The plans of a named baseline preset for networks of the given unit counts."""
    parts = BASELINES.get(name)(d_units, g_units, freeze_d_depth)
    if parts is None:
        return PlanPair(("reinit",) * g_units, ("reinit",) * d_units, name, baseline=name)
    d, g = parts
    return PlanPair(g.plan(modulation), d.plan(modulation), name, g, d, baseline=name)
