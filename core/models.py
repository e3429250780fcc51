"""Generator and discriminator architectures, each an ordered tuple of named transfer units.

G's units run from the latent input to the image, D's from the image to the logit (the
README, "Treatments and partitions"). Transfer code addresses units only through
``net.transfer_units``.
Every unit marks its pre-activation feature maps with a ``FilterShift`` slot (identity
until the filter-shift treatment enables it), so treatments never need to know a unit's
internal layout.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry

NORMS = ("batch", "layer", "none", "spectral")  # D's normalisation; spectral: sngan only
RESOLUTIONS = (32, 64)  # what every architecture builds; dcgan also 128
COND_HEADS = ("projection", "ac")
OWN_D_NORM = {"sngan": "spectral", "stylegan2": "none"}  # D's normalisation, fixed by the arch


@dataclass(frozen=True)
class ArchConfig:
    """What defines a G/D pair; stored in every checkpoint and compared on transfer."""

    name: str = "dcgan"
    resolution: int = 32
    width: int = 64
    z_dim: int = 100
    d_norm: str | None = None  # None: the architecture's own (spectral for sngan, else batch)
    num_classes: int = 0  # > 0: class-conditional (Wang et al. section 5); dcgan only
    cond_head: str = "projection"  # D's class head when conditional: projection | ac
    d_width: int | None = None  # D's base channels where they differ from G's (sngan)
    mapping_layers: int = 8  # stylegan2's mapping network depth

    def __post_init__(self) -> None:
        builder = ARCHITECTURES.get(self.name)
        own_norm = OWN_D_NORM.get(self.name)
        if self.d_norm is None:
            object.__setattr__(self, "d_norm", own_norm or "batch")
        if (self.name == "sngan") != (self.d_norm == "spectral"):
            raise GansweepError(f"arch.d_norm: {self.d_norm!r}: sngan's D is spectrally "
                                f"normalised, and only sngan's is")
        if own_norm is not None and self.d_norm != own_norm:
            raise GansweepError(f"arch.d_norm: {self.d_norm!r}: {self.name}'s D has "
                                f"{own_norm!r}")
        if not isinstance(self.mapping_layers, int) or self.mapping_layers < 1:
            raise GansweepError(f"arch.mapping_layers: {self.mapping_layers!r} must be a "
                                f"positive integer")
        if self.d_width is not None and (self.name != "sngan" or not isinstance(
                self.d_width, int) or self.d_width < 1):
            raise GansweepError(f"arch.d_width: {self.d_width!r} must be a positive integer, "
                                f"for sngan only")
        if self.resolution not in builder.resolutions:
            raise GansweepError(f"arch.resolution: {self.resolution!r} is not one of "
                                f"{builder.resolutions} ({self.name})")
        for field in ("width", "z_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise GansweepError(f"arch.{field}: {value!r} must be a positive integer")
        if self.d_norm not in NORMS:
            raise GansweepError(f"arch.d_norm: {self.d_norm!r} is not one of {NORMS}")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise GansweepError(f"arch.num_classes: {self.num_classes!r} must be an integer "
                                f">= 0")
        if self.num_classes and self.name != "dcgan":
            raise GansweepError(f"arch.num_classes: {self.num_classes}: class-conditional "
                                f"networks are built for 'dcgan' only, not {self.name!r}")
        if self.cond_head not in COND_HEADS:
            raise GansweepError(f"arch.cond_head: {self.cond_head!r} is not one of {COND_HEADS}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def unconditional(self) -> ArchConfig:
        """The same networks without classes: what a conditional net can transfer from."""
        return replace(self, num_classes=0, cond_head=COND_HEADS[0])


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


def _d_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # Layer norm over (C, H, W) with a per-channel affine, as in WGAN-GP's critic.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class ConvUnit(nn.Module):
    """layer -> norm -> filter-shift slot -> activation (DCGAN units)."""

    def __init__(self, layer: nn.Module, norm: nn.Module, act: nn.Module, channels: int,
                 flatten: bool = False):
        super().__init__()
        self.flatten = flatten
        self.layer = layer
        self.norm = norm
        self.shift = FilterShift(channels)
        self.act = act

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.flatten and x.dim() == 4:
            # The linear map over the whole feature map, computed as the convolution it
            # equals: pytorch/examples' DCGAN ends in that conv, and its checkpoints then
            # give its outputs bit for bit (core.foreign).
            w = self.layer.weight
            h = F.conv2d(x, w.view(w.shape[0], *x.shape[1:]), self.layer.bias).flatten(1)
        else:
            h = self.layer(x.flatten(1) if self.flatten else x)
        h = self.norm(h, y) if isinstance(self.norm, CondBatchNorm2d) else self.norm(h)
        return self.act(self.shift(h))


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


def _dcgan_init(m: nn.Module) -> None:
    # pytorch/examples dcgan weights_init, as the dissertation uses.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, CondBatchNorm2d):
        nn.init.normal_(m.gamma.weight, 1.0, 0.02)
        nn.init.zeros_(m.beta.weight)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _no_init(m: nn.Module) -> None:
    pass


ARCHITECTURES: Registry[Callable[[ArchConfig], tuple[TransferNet, TransferNet]]] = Registry(
    "architecture")


def register_arch(name: str, resolutions: tuple[int, ...] = RESOLUTIONS,
                  shorten: Callable[[ArchConfig, int], ArchConfig] | None = None):
    """Register a (G, D) builder for its resolutions. ``shorten(source arch, resolution)``:
    the architecture a source is cut down to for a lower target resolution (Price's
    cross-resolution transfer; ``cross_resolution``), for an architecture that can."""
    def deco(fn):
        fn.resolutions, fn.shorten = resolutions, shorten
        return ARCHITECTURES.register(name)(fn)
    return deco


def _dcgan_widths(cfg: ArchConfig) -> list[int]:
    """Channels from the 4x4 end to the image end: 8w 4w 2w w at 64 px (16w ... w at 128),
    and 4w 2w w w/2 at 32 px, where one more unit is needed at the image end to keep
    L = 5."""
    w = cfg.width
    if cfg.resolution == 32:
        return [4 * w, 2 * w, w, max(w // 2, 1)]
    n = cfg.resolution.bit_length() - 3  # 64: 4 up-sampling units, 128: 5
    return [w * 2 ** (n - 1 - i) for i in range(n)]


class ConvGenerator(TransferNet):
    """A generator whose first unit takes z as a 1 x 1 feature map."""

    def __init__(self, units: list[tuple[str, nn.Module]], init: Callable[[nn.Module], None],
                 z_dim: int):
        super().__init__(units, init)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(z.view(z.shape[0], -1, 1, 1), y)


class DCGANGenerator(ConvGenerator):
    """z -> 4x4 -> 8 -> 16 -> 32 (-> 64 -> 128) -> RGB. At 64 and 128 px the last unit
    upsamples to the image; at 32 px it is a stride-1 3x3 unit, so 32 and 64 px both have
    L = 5 as in the dissertation and the same partitions apply (L = 6 at 128 px). Units are
    named by the resolution they output."""

    def __init__(self, cfg: ArchConfig):
        c = _dcgan_widths(cfg)
        specs = [(cfg.z_dim, c[0], 4, 1, 0, "b4")]
        specs += [(c[i - 1], c[i], 4, 2, 1, f"b{4 * 2 ** i}") for i in range(1, len(c))]
        specs.append((c[-1], 3, 3, 1, 1, "rgb") if cfg.resolution == 32 else
                     (c[-1], 3, 4, 2, 1, f"b{cfg.resolution}"))
        units: list[tuple[str, nn.Module]] = []
        for n, (c_in, c_out, k, stride, pad, name) in enumerate(specs):
            last = n == len(specs) - 1
            layer = nn.ConvTranspose2d(c_in, c_out, k, stride, pad, bias=False)
            norm = nn.Identity() if last else (
                CondBatchNorm2d(c_out, cfg.num_classes) if cfg.num_classes else
                nn.BatchNorm2d(c_out))
            units.append((name, ConvUnit(layer, norm, nn.Tanh() if last else nn.ReLU(), c_out)))
        super().__init__(units, _dcgan_init, cfg.z_dim)


class DCGANDiscriminator(TransferNet):
    """RGB (-> 64 -> 32) -> 16 -> 8 -> 4 -> linear logit, mirroring G (a stride-1 first
    unit at 32 px). Units are named by the resolution they take in."""

    def __init__(self, cfg: ArchConfig):
        c = _dcgan_widths(cfg)[::-1]
        specs = [(3, c[0], 3, 1, 1, "rgb") if cfg.resolution == 32 else
                 (3, c[0], 4, 2, 1, f"b{cfg.resolution}")]
        first_down = cfg.resolution if cfg.resolution == 32 else cfg.resolution // 2
        specs += [(c[i - 1], c[i], 4, 2, 1, f"b{first_down // 2 ** (i - 1)}")
                  for i in range(1, len(c))]
        units: list[tuple[str, nn.Module]] = []
        for n, (c_in, c_out, k, stride, pad, name) in enumerate(specs):
            norm = nn.Identity() if n == 0 else _d_norm(cfg.d_norm, c_out)
            layer = nn.Conv2d(c_in, c_out, k, stride, pad, bias=False)
            units.append((name, ConvUnit(layer, norm, nn.LeakyReLU(0.2), c_out)))
        features = c[-1] * 4 * 4
        units.append(("fc", ClassHead(features, cfg.num_classes, cfg.cond_head)
                      if cfg.num_classes else
                      ConvUnit(nn.Linear(features, 1), nn.Identity(), nn.Identity(), 1,
                               flatten=True)))
        super().__init__(units, _dcgan_init)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The auxiliary classifier's logits (AC head only)."""
        *body, head = self.units.values()
        for unit in body:
            x = unit(x)
        return head.class_logits(x)


def shorten_dcgan(source: ArchConfig, resolution: int) -> ArchConfig:
    """A dcgan source cut down to ``resolution``: the same channels up to there (width
    scaled by the resolution ratio), so G keeps every unit but its output one and D every
    unit but its input one (``cross_resolution``)."""
    return replace(source, resolution=resolution,
                   width=source.width * source.resolution // resolution)


@register_arch("dcgan", resolutions=(32, 64, 128), shorten=shorten_dcgan)
def build_dcgan(cfg: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """The dissertation's DCGAN-style WGAN (after pytorch/examples dcgan)."""
    return DCGANGenerator(cfg), DCGANDiscriminator(cfg)


class DropoutLinear(nn.Module):
    """Dropout, then a linear logit over the flattened feature map (Price's D head)."""

    def __init__(self, features: int, p: float):
        super().__init__()
        self.dropout = nn.Dropout(p)
        self.layer = nn.Linear(features, 1)
        self.shift = FilterShift(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift(self.layer(self.dropout(x.flatten(1))))


@register_arch("dcgan-price", resolutions=(32,))
def build_dcgan_price(cfg: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """Price's Keras DCGAN at 32 px (width 128 gives his channels): G = dense z -> 4x4x4w
    (as the 4x4 transposed conv it equals, with bias, no norm), three stride-2 transposed
    convs 4w -> 2w -> w -> w with batch norm, a 3x3 tanh conv to RGB, LeakyReLU(0.2)
    throughout; D = 3x3 convs w/2 (stride 1) -> w -> w -> 2w (stride 2, batch norm),
    LeakyReLU(0.2), dropout 0.4 before the dense logit. Keras layers have biases; so do
    these. L = 5 per net, units named as dcgan's."""
    w = cfg.width
    act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
    g_chans = [4 * w, 2 * w, w, w]
    g_units: list[tuple[str, nn.Module]] = [
        ("b4", ConvUnit(nn.ConvTranspose2d(cfg.z_dim, g_chans[0], 4, 1, 0), nn.Identity(),
                        act(), g_chans[0]))]
    for i in range(1, 4):
        g_units.append((f"b{4 * 2 ** i}", ConvUnit(
            nn.ConvTranspose2d(g_chans[i - 1], g_chans[i], 4, 2, 1),
            nn.BatchNorm2d(g_chans[i]), act(), g_chans[i])))
    g_units.append(("rgb", ConvUnit(nn.Conv2d(w, 3, 3, 1, 1), nn.Identity(), nn.Tanh(), 3)))
    d_chans = [max(w // 2, 1), w, w, 2 * w]
    d_units: list[tuple[str, nn.Module]] = [
        ("rgb", ConvUnit(nn.Conv2d(3, d_chans[0], 3, 1, 1), nn.Identity(), act(), d_chans[0]))]
    for i, res in enumerate((32, 16, 8), start=1):
        d_units.append((f"b{res}", ConvUnit(nn.Conv2d(d_chans[i - 1], d_chans[i], 3, 2, 1),
                                            _d_norm(cfg.d_norm, d_chans[i]), act(),
                                            d_chans[i])))
    d_units.append(("fc", DropoutLinear(d_chans[-1] * 4 * 4, 0.4)))
    return ConvGenerator(g_units, _dcgan_init, cfg.z_dim), TransferNet(d_units, _dcgan_init)


# --- Wang et al.'s WGAN-GP ResNet (Gulrajani et al.'s 64x64 ResNet) -----------------------

class ResBlock(nn.Module):
    """Pre-activation residual block, upsampling (G) or downsampling (D)."""

    def __init__(self, c_in: int, c_out: int, norm: Callable[[int], nn.Module], up: bool):
        super().__init__()
        self.up = up
        self.norm1, self.shift1 = norm(c_in), FilterShift(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2, self.shift2 = norm(c_out), FilterShift(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest") if self.up else F.avg_pool2d(x, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.shift1(self.norm1(x)))
        if self.up:
            h = self._resample(h)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.shift2(self.norm2(h))))
        if self.up:
            return h + self.skip(self._resample(x))
        return self._resample(h) + self.skip(self._resample(x))


class LinearUnit(nn.Module):
    """Linear layer with a filter-shift slot on its output; reshapes or flattens as needed."""

    def __init__(self, c_in: int, c_out: int, out_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.layer = nn.Linear(c_in, c_out)
        self.shift = FilterShift(c_out)
        self.out_shape = out_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shift(self.layer(x.flatten(1)))
        return x if self.out_shape is None else x.view(x.shape[0], *self.out_shape)


class ResNetOut(nn.Module):
    """G's last unit: BN -> ReLU -> 3x3 conv to RGB -> tanh."""

    def __init__(self, c_in: int):
        super().__init__()
        self.norm, self.shift1 = nn.BatchNorm2d(c_in), FilterShift(c_in)
        self.conv = nn.Conv2d(c_in, 3, 3, 1, 1)
        self.shift2 = FilterShift(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.shift2(self.conv(F.relu(self.shift1(self.norm(x))))))


class ResNetIn(nn.Module):
    """D's first unit: 3x3 conv from RGB."""

    def __init__(self, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(3, c_out, 3, 1, 1)
        self.shift = FilterShift(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift(self.conv(x))


@register_arch("resnet")
def build_resnet(cfg: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """Wang et al. 2018: G = linear + 4 residual blocks + conv; D = conv + 4 blocks + linear."""
    w, s = cfg.width, cfg.resolution // 16
    g_chans = [8 * w, 8 * w, 4 * w, 2 * w, w]
    g_units: list[tuple[str, nn.Module]] = [("fc", LinearUnit(cfg.z_dim, g_chans[0] * s * s,
                                                              (g_chans[0], s, s)))]
    res = s
    for c_in, c_out in zip(g_chans[:-1], g_chans[1:]):
        res *= 2
        g_units.append((f"b{res}", ResBlock(c_in, c_out, nn.BatchNorm2d, up=True)))
    g_units.append(("out", ResNetOut(w)))

    d_chans = [w, 2 * w, 4 * w, 8 * w, 8 * w]
    d_units: list[tuple[str, nn.Module]] = [("in", ResNetIn(w))]
    res = cfg.resolution
    d_norm = lambda c: _d_norm(cfg.d_norm, c)  # noqa: E731
    for c_in, c_out in zip(d_chans[:-1], d_chans[1:]):
        d_units.append((f"b{res}", ResBlock(c_in, c_out, d_norm, up=False)))
        res //= 2
    d_units.append(("fc", LinearUnit(d_chans[-1] * res * res, 1)))
    g = TransferNet(g_units, _no_init)
    g.z_dim = cfg.z_dim
    return g, TransferNet(d_units, _no_init)


def build_models(cfg: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """Build a fresh (G, D) pair for an architecture config."""
    return ARCHITECTURES.get(cfg.name)(cfg)


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
            assert same or name == fresh, (net, name)  # shorten keeps the channels
        new.append(f"{net}.{fresh}")
    return target, new


def unit_names(cfg: ArchConfig) -> tuple[list[str], list[str]]:
    """The transfer units' names of G and of D, in network order."""
    with torch.device("meta"):
        g, d = build_models(cfg)
    return [n for n, _ in g.transfer_units], [n for n, _ in d.transfer_units]


def unit_counts(cfg: ArchConfig) -> tuple[int, int]:
    """(L_G, L_D): the number of transfer units of G and D."""
    g, d = unit_names(cfg)
    return len(g), len(d)


# Registered by their own modules, which build on this one.
from gansweep.core import sngan, stylegan2  # noqa: E402,F401
