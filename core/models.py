"""The transfer-unit protocol and the architecture registry.

A network is a ``TransferNet``: an ordered tuple of named transfer units. G's units run from
the latent input to the image, D's from the image to the logit (the README, "Treatments and
partitions"); transfer code addresses units only through ``net.transfer_units``. Every unit
marks its pre-activation feature maps with a ``FilterShift`` slot (identity until the
filter-shift treatment enables it), so treatments never need to know a unit's layout.

Architectures register here (``register_arch``) from their own modules (``core.dcgan``,
``core.resnet``, ``core.sngan``, ``core.stylegan2``) with their facts: the resolutions they
build, D's normalisations, the ``ArchConfig`` fields only they read, whether they build
class-conditional networks, and how a source is cut down to a lower resolution.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry

COND_HEADS = ("projection", "ac")


# Beyond what any published network has: a width, latent size or mapping depth past these
# (from a command line, a spec or a file) is refused before anything is sized by it.
MAX_WIDTH, MAX_MAPPING = 8192, 32


@dataclass(frozen=True)
class ArchConfig:
    """What defines a G/D pair; stored in every checkpoint and compared on transfer.
    Validated against its architecture's registered facts."""

    name: str = "dcgan"
    resolution: int = 32
    width: int = 64
    z_dim: int = 100
    d_norm: str | None = None  # None: the architecture's default (its first d_norms)
    num_classes: int = 0  # > 0: class-conditional (Wang et al. section 5)
    cond_head: str = "projection"  # D's class head when conditional: projection | ac
    d_width: int | None = None  # D's base channels where they differ from G's (sngan)
    mapping_layers: int = 8  # stylegan2's mapping network depth
    # stylegan2, what NVIDIA's stylegan2-ada networks add (core.stylegan2): channels at
    # resolution r are min(channel_base // r, width) (None: 64 * width, rosinality's table);
    # activations clamped to +-conv_clamp (None: not clamped); the minibatch-stddev group
    # size and channels; a tracked mean of W, the truncation centre (the ``style.w_avg`` key)
    channel_base: int | None = None
    conv_clamp: float | None = None
    mbstd_group: int = 4
    mbstd_channels: int = 1
    w_avg: bool = False

    def __post_init__(self) -> None:
        arch = ARCHITECTURES.get(self.name)
        if self.d_norm is None:
            object.__setattr__(self, "d_norm", arch.d_norms[0])
        if self.d_norm not in arch.d_norms:
            raise GansweepError(f"arch.d_norm: {self.d_norm!r} is not one of {arch.d_norms} "
                                f"({self.name})")
        if self.resolution not in arch.resolutions:
            raise GansweepError(f"arch.resolution: {self.resolution!r} is not one of "
                                f"{arch.resolutions} ({self.name})")
        for name in ("width", "z_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WIDTH:
                raise GansweepError(f"arch.{name}: {value!r} must be an integer in [1, "
                                    f"{MAX_WIDTH}]")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise GansweepError(f"arch.num_classes: {self.num_classes!r} must be an integer "
                                f">= 0")
        if self.num_classes and not arch.conditional:
            conditional = [a for a in ARCHITECTURES if ARCHITECTURES.get(a).conditional]
            raise GansweepError(f"arch.num_classes: {self.num_classes}: class-conditional "
                                f"networks are built for {conditional} only, not {self.name!r}")
        if self.cond_head not in COND_HEADS:
            raise GansweepError(f"arch.cond_head: {self.cond_head!r} is not one of {COND_HEADS}")
        for f in fields(self):
            owners = [a for a in ARCHITECTURES if f.name in ARCHITECTURES.get(a).options]
            value = getattr(self, f.name)
            if not owners or value == f.default:
                continue
            if self.name not in owners:
                raise GansweepError(f"arch.{f.name}: {value!r} is for {owners} only, not "
                                    f"{self.name!r}")
            _check_option(f.name, value, f.default)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def unconditional(self) -> ArchConfig:
        """The same networks without classes: what a conditional net can transfer from."""
        return replace(self, num_classes=0, cond_head=COND_HEADS[0])


def _check_option(name: str, value: object, default: object) -> None:
    """An architecture option's non-default value has the option's type: a flag, a positive
    number (``conv_clamp``) or a positive integer."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise GansweepError(f"arch.{name}: {value!r} must be true or false")
    elif name == "conv_clamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 < value < float("inf"):
            raise GansweepError(f"arch.{name}: {value!r} must be a positive number or null")
    else:
        high = {"mapping_layers": MAX_MAPPING, "channel_base": 64 * MAX_WIDTH}.get(name,
                                                                                 MAX_WIDTH)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            raise GansweepError(f"arch.{name}: {value!r} must be an integer in [1, {high}]")


class FilterShift(nn.Module):
    """Per-channel scale and shift of a pre-activation feature map (Noguchi & Harada 2019).

    Identity, without parameters, until ``enable()``; then h' = gamma * h + beta with
    gamma = 1, beta = 0 at start.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.gamma: nn.Parameter | None = None
        self.beta: nn.Parameter | None = None

    def enable(self, device: torch.device) -> None:
        self.gamma = nn.Parameter(torch.ones(self.channels, device=device))
        self.beta = nn.Parameter(torch.zeros(self.channels, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma is None:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.gamma.view(shape) + self.beta.view(shape)


class ClassTable(nn.Module):
    """Per-class parameters, one row of ``features`` per class: what a class-conditional
    network adds to an unconditional one. Treatments always train them
    (gansweep.core.treatments)."""

    def __init__(self, num_classes: int, features: int, fill: float | None):
        super().__init__()
        self.fill = fill
        self.weight = nn.Parameter(torch.empty(num_classes, features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.fill is None:
            nn.init.normal_(self.weight, 0.0, 0.02)
        else:
            nn.init.constant_(self.weight, self.fill)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.weight[y]


class CondBatchNorm2d(nn.BatchNorm2d):
    """Conditional batch norm (Dumoulin et al.; Wang et al.'s 'Cond BNorm'): statistics
    shared by all classes, a scale and shift per class."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__(channels, affine=False)
        self.gamma = ClassTable(num_classes, channels, 1.0)
        self.beta = ClassTable(num_classes, channels, 0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise GansweepError("a class-conditional generator needs class labels")
        h = super().forward(x)
        return h * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


def d_norm_layer(kind: str, channels: int) -> nn.Module:
    """D's normalisation layer of a kind (ArchConfig.d_norm) for a conv architecture."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # Layer norm over (C, H, W) with a per-channel affine, as in WGAN-GP's critic.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class ClassHead(nn.Module):
    """D's last unit when class-conditional: the unconditional linear logit plus either a
    projection term <embed(y), h> (Miyato & Koyama; the embedding starts at 0, so D starts
    as its unconditional source) or an auxiliary classifier (AC-GAN, Wang et al. eq. 7-8)."""

    def __init__(self, features: int, num_classes: int, kind: str):
        super().__init__()
        self.kind = kind
        self.layer = nn.Linear(features, 1)
        self.shift = FilterShift(1)
        if kind == "projection":
            self.embed = ClassTable(num_classes, features, 0.0)
        else:
            self.classifier = ClassTable(num_classes, features, None)
            self.classifier_bias = ClassTable(num_classes, 1, 0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        out = self.shift(self.layer(h))
        if self.kind == "projection" and y is not None:
            out = out + (self.embed(y) * h).sum(1, keepdim=True)
        return out

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.classifier.weight.T + self.classifier_bias.weight.T


class TransferNet(nn.Module):
    """A network made of an ordered ``nn.ModuleDict`` of transfer units."""

    def __init__(self, units: list[tuple[str, nn.Module]], init: Callable[[nn.Module], None]):
        super().__init__()
        self.units = nn.ModuleDict(units)
        self._init = init
        for unit in self.units.values():
            self.reset_unit(unit)

    @property
    def transfer_units(self) -> tuple[tuple[str, nn.Module], ...]:
        return tuple(self.units.items())

    @property
    def num_units(self) -> int:
        return len(self.units)

    def reset_unit(self, unit: nn.Module) -> None:
        """Re-initialise a unit's parameters and norm statistics as at construction."""
        for m in unit.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.Linear, nn.Conv2d,
                              nn.ConvTranspose2d, ClassTable)):
                m.reset_parameters()
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
            self._init(m)

    def train(self, mode: bool = True) -> TransferNet:
        # Norm layers whose statistics a treatment fixed stay in eval mode (see treatments).
        super().train(mode)
        for m in self.modules():
            if getattr(m, "frozen_stats", False):
                m.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y``: class labels, for a class-conditional network only."""
        for unit in self.units.values():
            x = unit(x) if y is None else unit(x, y)
        return x


@dataclass(frozen=True)
class Architecture:
    """A registered (G, D) builder and its facts."""

    name: str
    build: Callable[[ArchConfig], tuple[TransferNet, TransferNet]]
    resolutions: tuple[int, ...]
    d_norms: tuple[str, ...] = ("batch", "layer", "none")  # D's; the first is the default
    options: tuple[str, ...] = ()  # ArchConfig fields only this architecture reads
    conditional: bool = False  # builds class-conditional networks (num_classes > 0)
    # The architecture a source is cut down to for a lower target resolution (Price's
    # cross-resolution transfer; ``cross_resolution``); None: it cannot be.
    shorten: Callable[[ArchConfig, int], ArchConfig] | None = None


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_arch(name: str, resolutions: tuple[int, ...], **facts):
    """Register a (G, D) builder with its facts (``Architecture``'s fields)."""
    def deco(fn: Callable[[ArchConfig], tuple[TransferNet, TransferNet]]):
        ARCHITECTURES.register(name)(Architecture(name, fn, tuple(resolutions), **facts))
        return fn
    return deco


def build_models(cfg: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """Build a fresh (G, D) pair for an architecture config."""
    return ARCHITECTURES.get(cfg.name).build(cfg)


def load_source_state(net: TransferNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Load a source's weights into ``net`` and return the parameters the source did not
    hold. A class-conditional net may load an unconditional source: each batch norm's
    scale and shift is copied to every class (Wang et al. section 5), and D's class head
    starts from its initialisation (a zero projection: D's output is the source's)."""
    given = set(state)
    state = dict(state)
    for name, m in net.named_modules():
        if isinstance(m, CondBatchNorm2d):
            for src, table in (("weight", "gamma"), ("bias", "beta")):
                value = state.pop(f"{name}.{src}", None)
                rows = getattr(m, table).weight.shape[0]
                if value is not None and value.dim() == 1:
                    state.setdefault(f"{name}.{table}.weight", value.expand(rows, -1).clone())
    missing, unexpected = net.load_state_dict(state, strict=False)
    tables = {f"{n}.weight" for n, m in net.named_modules() if isinstance(m, ClassTable)}
    absent = [k for k in missing if k not in tables]
    if absent or unexpected:
        raise RuntimeError(f"missing keys {absent[:3]}, unexpected keys {unexpected[:3]}")
    return sorted(tables - given)


def cross_resolution(source: ArchConfig, resolution: int) -> tuple[ArchConfig, list[str]]:
    """Price's transfer to a lower resolution ("shortening the model down to the 32x32
    layer"): the target architecture and its new units (``G.<unit>``, ``D.<unit>``): G's
    output unit and D's input unit, which a transfer re-initialises; every other unit of the
    target is the source's unit of the same name and shapes."""
    builder = ARCHITECTURES.get(source.name)
    if builder.shorten is None:
        raise GansweepError(f"resolution: {source.name} cannot transfer across resolutions "
                            f"(the source is {source.resolution} px, the target {resolution})")
    if resolution >= source.resolution:
        raise GansweepError(f"resolution: a {source.resolution} px source transfers to a lower "
                            f"resolution only, not {resolution}")
    target = builder.shorten(source, resolution)  # validates the resolution
    with torch.device("meta"):
        nets = zip(("G", "D"), build_models(source), build_models(target))
    new = []
    for net, src, tgt in nets:
        src_units, tgt_units = dict(src.transfer_units), list(tgt.transfer_units)
        fresh = tgt_units[-1][0] if net == "G" else tgt_units[0][0]
        for name, unit in tgt_units:
            shapes = {k: v.shape for k, v in unit.state_dict().items()}
            same = name in src_units and shapes == {
                k: v.shape for k, v in src_units[name].state_dict().items()}
            if not (same or name == fresh):  # an architecture's shorten must keep them
                raise GansweepError(f"resolution: {source.name} cut to {resolution} px changes "
                                    f"{net}.{name}, which a transfer must keep")
        new.append(f"{net}.{fresh}")
    return target, new


def unit_names(cfg: ArchConfig) -> tuple[list[str], list[str]]:
    """The transfer units' names of G and of D, in network order."""
    g, d = _unit_names(cfg)
    return list(g), list(d)


@functools.cache
def _unit_names(cfg: ArchConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Built once per architecture (without weights): a spec's validation asks per setting.
    with torch.device("meta"):
        g, d = build_models(cfg)
    return tuple(n for n, _ in g.transfer_units), tuple(n for n, _ in d.transfer_units)


def unit_counts(cfg: ArchConfig) -> tuple[int, int]:
    """(L_G, L_D): the number of transfer units of G and D."""
    g, d = unit_names(cfg)
    return len(g), len(d)


# Registered by their own modules, which build on this one.
from gansweep.core import dcgan, resnet, sngan, stylegan2  # noqa: E402,F401
