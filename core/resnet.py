"""Wang et al.'s WGAN-GP ResNet (Gulrajani et al.'s 64x64 ResNet)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.models import ArchConfig, FilterShift, TransferNet, d_norm_layer, register_arch


def _no_init(m: nn.Module) -> None:
    pass


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


@register_arch("resnet", resolutions=(32, 64))
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
    d_norm = lambda c: d_norm_layer(cfg.d_norm, c)  # noqa: E731
    for c_in, c_out in zip(d_chans[:-1], d_chans[1:]):
        d_units.append((f"b{res}", ResBlock(c_in, c_out, d_norm, up=False)))
        res //= 2
    d_units.append(("fc", LinearUnit(d_chans[-1] * res * res, 1)))
    g = TransferNet(g_units, _no_init)
    g.z_dim = cfg.z_dim
    return g, TransferNet(d_units, _no_init)


