"""The layers of StyleGAN2 (core.stylegan2) in rosinality/stylegan2-pytorch's module layout:
equalised-learning-rate linear and convolution layers, the style-modulated convolution, FIR
up/downsampling, noise inputs, and the transfer-unit grouping. Written from the conventions
in ``../shared/reference/README.md``; see core.stylegan2 for what is arranged for speed.

``clamp`` (NVIDIA's ``conv_clamp``; None in rosinality's networks): the activations of a
convolution layer after its bias, activation and gain are clamped to +-clamp, in that order,
as stylegan2-ada's ``bias_act`` does.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.models import FilterShift

SQRT2 = math.sqrt(2)
BLUR = (1, 3, 3, 1)


def fir_kernel(gain: float = 1.0) -> torch.Tensor:
    k = torch.tensor(BLUR, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the FIR ``kernel``, downsample by
    keeping every ``down``-th pixel; each channel filtered on its own (a depthwise
    convolution: oneDNN's depthwise kernels are many times faster on the CPU than the same
    filter over a batch of one-channel images)."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, shift: FilterShift | None = None,
                     clamp: float | None = None) -> torch.Tensor:
    shape = (1, bias.shape[0]) + (1,) * (x.dim() - 2)
    h = x + bias.view(shape)
    out = F.leaky_relu(h if shift is None else shift(h), negative_slope=0.2) * SQRT2
    return out if clamp is None else out.clamp(-clamp, clamp)


class EqualizedLayer(nn.Module):
    """A layer whose raw ``weight`` is scaled by 1/sqrt(fan_in) in the forward pass
    (equalised learning rate); core.treatments freezes and modulates its ``weight``."""

    weight: torch.Tensor


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=(2, 1))


class FusedLeakyReLU(nn.Module):
    """The bias, then leaky ReLU(0.2) times sqrt(2)[, clamped]; the pre-activation map (conv
    + bias) passes the unit's filter-shift slot, which adds no state-dict key until enabled."""

    def __init__(self, channels: int, clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.shift = FilterShift(channels)
        self.clamp = clamp

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.shift, self.clamp)


class EqualLinear(EqualizedLayer):
    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in))
        self.bias = nn.Parameter(torch.empty(c_out))
        self.bias_init, self.lr_mul, self.activate = bias_init, lr_mul, activate
        self.scale = (1 / math.sqrt(c_in)) * lr_mul
        if activate:
            self.shift = FilterShift(c_out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_().div_(self.lr_mul)
            self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale),
                                    self.bias * self.lr_mul, self.shift)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class EqualConv2d(EqualizedLayer):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(c_out)) if bias else None
        self.scale = 1 / math.sqrt(c_in * kernel ** 2)
        self.stride, self.padding = stride, padding
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride,
                        padding=self.padding)


class ModulatedConv2d(EqualizedLayer):
    """The style-modulated convolution; ``upsample``: a stride-2 transposed convolution
    followed by the blur."""

    def __init__(self, c_in: int, c_out: int, kernel: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, c_out, c_in, kernel, kernel))
        if upsample:
            self.blur = Blur((1, 1), gain=4.0)
        self.modulation = EqualLinear(style_dim, c_in, bias_init=1.0)
        self.scale = 1 / math.sqrt(c_in * kernel ** 2)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # Modulation and demodulation scale the activations, not a per-sample copy of the
        # kernel (StyleGAN2-ADA's non-fused path): the same function, one shared-weight
        # convolution instead of one convolution grouped over the batch, several times
        # faster on the CPU. AdaFM's gamma/beta act on ``weight`` before either.
        n, c_in = x.shape[:2]
        weight = self.scale * self.weight[0]  # c_out x c_in x k x k
        styles = self.modulation(style)  # n x c_in
        x = x * styles.view(n, c_in, 1, 1)
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            x = self.blur(x)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:  # 1 / |W s| per sample and output channel
            demod = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum([2, 3]).T + 1e-8)
            x = x * demod.view(n, -1, 1, 1)
        return x


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            n, _, h, w = x.shape
            noise = x.new_empty(n, 1, h, w).normal_()
        return x + self.weight * noise


class StyledConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, style_dim: int, upsample: bool = False,
                 clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(c_out, clamp)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """The 1 x 1 modulated convolution to RGB plus its bias[, clamped], added to the
    upsampled RGB of the previous resolution (StyleGAN2's skip generator)."""

    def __init__(self, c_in: int, style_dim: int, upsample: bool = True,
                 clamp: float | None = None):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(c_in, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.clamp = clamp

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, c, 4, 4))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.input)

    def forward(self, n: int) -> torch.Tensor:
        return self.input.repeat(n, 1, 1, 1)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Unit(nn.Module):
    """A transfer unit made of modules the network registers under rosinality's names: it
    groups them for the treatments without adding state-dict keys (the network does not
    register it)."""

    def __init__(self, **parts: nn.Module):
        super().__init__()
        for name, part in parts.items():
            self.add_module(name, part)


class UnitsOf:
    """What core.treatments needs of a network besides nn.Module: its ordered units, and
    resetting one unit's parameters to a fresh initialisation."""

    _units: tuple[tuple[str, Unit], ...]

    @property
    def transfer_units(self) -> tuple[tuple[str, nn.Module], ...]:
        return self._units

    @property
    def num_units(self) -> int:
        return len(self._units)

    def reset_unit(self, unit: nn.Module) -> None:
        for m in unit.modules():
            if m is not unit and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _set_units(self, units: list[tuple[str, Unit]]) -> None:
        object.__setattr__(self, "_units", tuple(units))  # not registered: no new keys


def conv_layer(c_in: int, c_out: int, kernel: int, downsample: bool = False,
               activate: bool = True, bias: bool = True,
               clamp: float | None = None) -> nn.Sequential:
    """rosinality's ConvLayer: [blur,] equalised conv[, fused leaky ReLU with the bias]."""
    layers: list[nn.Module] = []
    if downsample:
        p = (len(BLUR) - 2) + (kernel - 1)
        layers.append(Blur(((p + 1) // 2, p // 2)))
    layers.append(EqualConv2d(c_in, c_out, kernel, stride=2 if downsample else 1,
                              padding=0 if downsample else kernel // 2,
                              bias=bias and not activate))
    if activate:
        layers.append(FusedLeakyReLU(c_out, clamp))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """D's residual block: (conv2(conv1(x)) + skip(x)) / sqrt(2). With ``clamp`` the conv
    path is clamped before the sum: stylegan2-ada folds the 1/sqrt(2) into its gains and
    clamps conv2 at clamp/sqrt(2) after them, the same function."""

    def __init__(self, c_in: int, c_out: int, clamp: float | None = None):
        super().__init__()
        self.conv1 = conv_layer(c_in, c_in, 3, clamp=clamp)
        self.conv2 = conv_layer(c_in, c_out, 3, downsample=True, clamp=clamp)
        self.skip = conv_layer(c_in, c_out, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2
