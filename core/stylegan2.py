"""StyleGAN2 (Karras et al. 2020) in rosinality/stylegan2-pytorch's state-dict layout, the
format most few-shot adaptation work starts from (FreezeD, CDC, RSSA, AdAM, RICK).

Written from the layout and conventions of ``../shared/reference/README.md``: the modules
below have rosinality's names, so ``load_state_dict`` takes its ``g``/``g_ema``/``d``
entries as they are, and the forward pass computes the same functions (equalised learning
rate as a Python-float factor in the forward pass, modulation and demodulation, FIR
filtering), reproducing the fixtures' outputs to within 2e-6 of their largest value. Two
steps are arranged for speed rather than copied: the style and the demodulation scale the
activations around one shared-weight convolution (StyleGAN2-ADA's non-fused path) instead
of building a kernel per sample for a convolution grouped over the batch, and the FIR
filter is a depthwise convolution instead of a convolution over a batch of one-channel
images: 3x faster forward and backward on the CPU (32 px, width 32, batch 16).

Transfer units (``transfer_units``; rosinality's modules grouped, no state-dict key added):

| net | units, in order                                                                 |
|-----|---------------------------------------------------------------------------------|
| G   | ``mapping`` (the MLP), ``b4`` (constant, conv1, to_rgb1), ``b8`` ... ``b{size}`` |
|     | (the upsampling conv, the conv and the toRGB of that resolution)                |
| D   | ``rgb`` (fromRGB), ``b{size}`` ... ``b8`` (a residual block each, named by the  |
|     | resolution it takes in), ``b4`` (minibatch-stddev, final conv and linears)      |

L_G = L_D = log2(size) - 1: 8 at 256 px, 5 at 32 px.

Treatments meet the layers as every other architecture's (core.treatments): each
``EqualizedLayer``'s raw ``weight`` is what freeze fixes and AdaFM modulates. In a modulated
convolution AdaFM acts on the base kernel, before the style and the demodulation:
W' = gamma * W + beta (one gamma, beta per output/input channel pair), then the layer
computes conv(x * s, scale * W') / sqrt(sum (scale * W' * s)^2 + 1e-8) per sample and
output channel. At gamma = 1, beta = 0 that is the source's layer bit for bit.

Noise inputs: in train mode every conv draws fresh N(0, 1) noise (StyleGAN2's training); in
eval mode it uses the stored ``noises.noise_i`` buffers, so evaluations from fixed latents
are deterministic (rosinality's ``randomize_noise=False``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.models import ArchConfig, FilterShift, register_arch

SQRT2 = math.sqrt(2)
BLUR = (1, 3, 3, 1)


def channels(cfg: ArchConfig, resolution: int) -> int:
    """StyleGAN2's channel table with channel_multiplier 2: ``width`` up to 64 px, halved
    with each doubling above (width 512: FFHQ's 512 ... 256 at 128 px, 128 at 256 px)."""
    return max(1, cfg.width * 64 // max(resolution, 64))


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


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor,
                     shift: FilterShift | None = None) -> torch.Tensor:
    shape = (1, bias.shape[0]) + (1,) * (x.dim() - 2)
    h = x + bias.view(shape)
    return F.leaky_relu(h if shift is None else shift(h), negative_slope=0.2) * SQRT2


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
    """The bias, then leaky ReLU(0.2) times sqrt(2); the pre-activation map (conv + bias)
    passes the unit's filter-shift slot, which adds no state-dict key until enabled."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.shift = FilterShift(channels)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.shift)


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
    def __init__(self, c_in: int, c_out: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(c_out)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, c_in: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(c_in, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
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


class StyleGAN2Generator(UnitsOf, nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.size, self.z_dim = cfg.resolution, cfg.z_dim
        style_dim, log_size = cfg.z_dim, int(math.log2(cfg.resolution))
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=0.01, activate=True)
            for _ in range(cfg.mapping_layers)])
        c4 = channels(cfg, 4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, style_dim)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False)
        self.num_layers = 2 * log_size - 3
        self.n_latent = 2 * log_size - 2
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        c_in = c4
        units = [("mapping", Unit(style=self.style)),
                 ("b4", Unit(input=self.input, conv1=self.conv1, to_rgb1=self.to_rgb1))]
        for i in range(3, log_size + 1):
            c_out = channels(cfg, 2 ** i)
            self.convs.append(StyledConv(c_in, c_out, style_dim, upsample=True))
            self.convs.append(StyledConv(c_out, c_out, style_dim))
            self.to_rgbs.append(ToRGB(c_out, style_dim))
            units.append((f"b{2 ** i}", Unit(conv_up=self.convs[-2], conv=self.convs[-1],
                                             to_rgb=self.to_rgbs[-1])))
            c_in = c_out
        self._set_units(units)

    def mean_latent(self, n: int) -> torch.Tensor:
        """The mean of ``n`` mapped latents (the truncation centre)."""
        return self.style(torch.randn(n, self.z_dim, device=self.input.input.device)).mean(
            0, keepdim=True)

    def forward(self, z: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor | None = None,
                truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
                inject_index: int | None = None, return_latents: bool = False):
        """``z``: latents (N x z_dim), or two for style mixing (the second from W+ row
        ``inject_index`` on). Returns the image, or (image, W+) with ``return_latents``."""
        zs = [z] if isinstance(z, torch.Tensor) else list(z)
        styles = [self.style(s) for s in zs]
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) < 2:
            latent = styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            k = inject_index if inject_index is not None else self.n_latent // 2
            latent = torch.cat([styles[0].unsqueeze(1).repeat(1, k, 1),
                                styles[1].unsqueeze(1).repeat(1, self.n_latent - k, 1)], 1)
        noise = [None] * self.num_layers if self.training else \
            [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.conv1(self.input(latent.shape[0]), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for k, (up, conv, to_rgb) in enumerate(zip(self.convs[::2], self.convs[1::2],
                                                    self.to_rgbs)):
            out = up(out, latent[:, 2 * k + 1], noise[2 * k + 1])
            out = conv(out, latent[:, 2 * k + 2], noise[2 * k + 2])
            skip = to_rgb(out, latent[:, 2 * k + 3], skip)
        return (skip, latent) if return_latents else skip


def conv_layer(c_in: int, c_out: int, kernel: int, downsample: bool = False,
               activate: bool = True, bias: bool = True) -> nn.Sequential:
    """rosinality's ConvLayer: [blur,] equalised conv[, fused leaky ReLU with the bias]."""
    layers: list[nn.Module] = []
    if downsample:
        p = (len(BLUR) - 2) + (kernel - 1)
        layers.append(Blur(((p + 1) // 2, p // 2)))
    layers.append(EqualConv2d(c_in, c_out, kernel, stride=2 if downsample else 1,
                              padding=0 if downsample else kernel // 2,
                              bias=bias and not activate))
    if activate:
        layers.append(FusedLeakyReLU(c_out))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = conv_layer(c_in, c_in, 3)
        self.conv2 = conv_layer(c_in, c_out, 3, downsample=True)
        self.skip = conv_layer(c_in, c_out, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class StyleGAN2Discriminator(UnitsOf, nn.Module):
    STDDEV_GROUP = 4

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        size, log_size = cfg.resolution, int(math.log2(cfg.resolution))
        c_in = channels(cfg, size)
        convs: list[nn.Module] = [conv_layer(3, c_in, 1)]
        for i in range(log_size, 2, -1):
            c_out = channels(cfg, 2 ** (i - 1))
            convs.append(ResBlock(c_in, c_out))
            c_in = c_out
        self.convs = nn.Sequential(*convs)
        c4 = channels(cfg, 4)
        self.final_conv = conv_layer(c_in + 1, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 4 * 4, c4, activate=True),
                                          EqualLinear(c4, 1))
        units = [("rgb", Unit(from_rgb=convs[0]))]
        units += [(f"b{size // 2 ** (j - 1)}", Unit(block=convs[j]))
                  for j in range(1, len(convs))]
        units.append(("b4", Unit(final_conv=self.final_conv, final_linear=self.final_linear)))
        self._set_units(units)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.convs(x)
        n, c, h, w = out.shape
        group = min(n, self.STDDEV_GROUP)
        while n % group:  # rosinality's needs a batch divisible by the group; this any batch
            group -= 1
        sd = out.view(group, -1, 1, c, h, w)
        sd = torch.sqrt(sd.var(0, unbiased=False) + 1e-8)
        sd = sd.mean([2, 3, 4], keepdim=True).squeeze(2).repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, sd], 1))
        return self.final_linear(out.view(n, -1))


@register_arch("stylegan2", resolutions=(32, 64, 128, 256, 512, 1024), d_norms=("none",),
               options=("mapping_layers",))
def build_stylegan2(cfg: ArchConfig) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    """StyleGAN2, config F's networks with channel multiplier 2 (``width`` = 512 and
    ``z_dim`` = 512, ``mapping_layers`` = 8 at FFHQ-256)."""
    return StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
