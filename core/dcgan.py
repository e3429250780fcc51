"""DCGAN: the dissertation's DCGAN-style WGAN (after pytorch/examples' dcgan) and Price's
Keras DCGAN (``dcgan-price``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.models import (
    ArchConfig,
    ClassHead,
    CondBatchNorm2d,
    FilterShift,
    TransferNet,
    d_norm_layer,
    register_arch,
)


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
            norm = nn.Identity() if n == 0 else d_norm_layer(cfg.d_norm, c_out)
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


@register_arch("dcgan", resolutions=(32, 64, 128), conditional=True,
               shorten=shorten_dcgan)
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
                                            d_norm_layer(cfg.d_norm, d_chans[i]), act(),
                                            d_chans[i])))
    d_units.append(("fc", DropoutLinear(d_chans[-1] * 4 * 4, 0.4)))
    return ConvGenerator(g_units, _dcgan_init, cfg.z_dim), TransferNet(d_units, _dcgan_init)


