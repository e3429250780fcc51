"""StyleGAN2 (Karras et al. 2020) in rosinality/stylegan2-pytorch's state-dict layout, the
format most few-shot adaptation work starts from (FreezeD, CDC, RSSA, AdAM, RICK); the layers
are in core.stylegan2_layers.

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

NVIDIA's stylegan2-ada-pytorch networks (imported by core.foreign_ada) are the same functions
with a few settings rosinality's lack, each an ``ArchConfig`` field whose default is
rosinality's: ``channel_base`` (channels at resolution r are min(channel_base // r, width),
NVIDIA's rule with width as its channel_max), ``conv_clamp`` (every convolution's activation
clamped after its bias, activation and gain; the toRGB outputs too; not the linear layers),
``mbstd_group`` and ``mbstd_channels`` (the minibatch-stddev group size and the number of
statistics channels D appends), and ``w_avg``: G tracks the mean of W in train mode (decay
0.995, as stylegan2-ada) in the buffer ``style.w_avg``, the centre of truncation when no
``truncation_latent`` is given. NVIDIA's generator has no equalised-lr factor on its
modulated convolutions' kernels; demodulation cancels any factor, so its kernels load as they
are (outputs equal to float rounding).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gansweep.core.errors import GansweepError
from gansweep.core.models import ArchConfig, register_arch
from gansweep.core.stylegan2_layers import (
    ConstantInput,
    EqualLinear,
    PixelNorm,
    ResBlock,
    StyledConv,
    ToRGB,
    Unit,
    UnitsOf,
    conv_layer,
)

W_AVG_BETA = 0.995  # stylegan2-ada's decay of the tracked mean of W


def channels(cfg: ArchConfig, resolution: int) -> int:
    """Channels at a resolution: min(channel_base // resolution, width). Without
    ``channel_base``, StyleGAN2's table with channel_multiplier 2: ``width`` up to 64 px,
    halved with each doubling above (width 512: FFHQ's 512 ... 256 at 128 px, 128 at 256)."""
    if cfg.channel_base is None:
        return max(1, cfg.width * 64 // max(resolution, 64))
    return min(cfg.channel_base // resolution, cfg.width)


class Mapping(nn.Sequential):
    """The mapping network (pixel norm, then equalised linear layers at lr x 0.01 with leaky
    ReLU) and, with ``w_avg``, the running mean of its output (the truncation centre)."""

    w_avg: torch.Tensor | None

    def __init__(self, style_dim: int, layers: int, w_avg: bool):
        super().__init__(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=0.01, activate=True) for _ in range(layers)])
        self.register_buffer("w_avg", torch.zeros(style_dim) if w_avg else None)

    def reset_parameters(self) -> None:
        if self.w_avg is not None:
            self.w_avg.zero_()

    @torch.no_grad()
    def track(self, w: torch.Tensor) -> None:
        """Move the mean of W towards a batch's mapped latents (train mode)."""
        self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, W_AVG_BETA))


class StyleGAN2Generator(UnitsOf, nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.size, self.z_dim = cfg.resolution, cfg.z_dim
        style_dim, log_size = cfg.z_dim, int(math.log2(cfg.resolution))
        clamp = cfg.conv_clamp
        self.style = Mapping(style_dim, cfg.mapping_layers, cfg.w_avg)
        c4 = channels(cfg, 4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, style_dim, clamp=clamp)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False, clamp=clamp)
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
            self.convs.append(StyledConv(c_in, c_out, style_dim, upsample=True, clamp=clamp))
            self.convs.append(StyledConv(c_out, c_out, style_dim, clamp=clamp))
            self.to_rgbs.append(ToRGB(c_out, style_dim, clamp=clamp))
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
        ``inject_index`` on). Returns the image, or (image, W+) with ``return_latents``.
        ``truncation`` < 1 pulls W towards ``truncation_latent``, by default the tracked
        mean of W (``w_avg``)."""
        zs = [z] if isinstance(z, torch.Tensor) else list(z)
        styles = [self.style(s) for s in zs]
        if self.training and self.style.w_avg is not None:
            self.style.track(styles[0])  # as stylegan2-ada: not from a mixing latent
        if truncation < 1:
            if truncation_latent is None:
                truncation_latent = self.style.w_avg
            if truncation_latent is None:
                raise GansweepError("truncation: this generator tracks no mean of W (arch.w_avg "
                                    "is false); give truncation_latent")
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


class StyleGAN2Discriminator(UnitsOf, nn.Module):
    """D: fromRGB, residual blocks down to 4 x 4, then the minibatch-stddev statistics
    (``mbstd_channels`` of them over groups of ``mbstd_group`` samples), a conv and two
    linear layers."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        size, log_size = cfg.resolution, int(math.log2(cfg.resolution))
        clamp = cfg.conv_clamp
        c_in = channels(cfg, size)
        convs: list[nn.Module] = [conv_layer(3, c_in, 1, clamp=clamp)]
        for i in range(log_size, 2, -1):
            c_out = channels(cfg, 2 ** (i - 1))
            convs.append(ResBlock(c_in, c_out, clamp=clamp))
            c_in = c_out
        self.convs = nn.Sequential(*convs)
        c4 = channels(cfg, 4)
        if c4 % cfg.mbstd_channels:
            raise GansweepError(f"arch.mbstd_channels: {cfg.mbstd_channels} does not divide "
                                f"D's {c4} channels at 4 x 4")
        self.stddev_group, self.stddev_channels = cfg.mbstd_group, cfg.mbstd_channels
        self.final_conv = conv_layer(c_in + cfg.mbstd_channels, c4, 3, clamp=clamp)
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
        group, f = min(n, self.stddev_group), self.stddev_channels
        while n % group:  # rosinality's needs a batch divisible by the group; this any batch
            group -= 1
        sd = out.view(group, -1, f, c // f, h, w)
        sd = torch.sqrt(sd.var(0, unbiased=False) + 1e-8)
        sd = sd.mean([2, 3, 4]).view(-1, f, 1, 1).repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, sd], 1))
        return self.final_linear(out.view(n, -1))


@register_arch("stylegan2", resolutions=(32, 64, 128, 256, 512, 1024), d_norms=("none",),
               options=("mapping_layers", "channel_base", "conv_clamp", "mbstd_group",
                        "mbstd_channels", "w_avg"))
def build_stylegan2(cfg: ArchConfig) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    """StyleGAN2, config F's networks with channel multiplier 2 (``width`` = 512 and
    ``z_dim`` = 512, ``mapping_layers`` = 8 at FFHQ-256); NVIDIA's settings as configured."""
    if cfg.channel_base is not None and cfg.channel_base < cfg.resolution:
        raise GansweepError(f"arch.channel_base: {cfg.channel_base} leaves no channels at "
                            f"{cfg.resolution} px (channels = channel_base // resolution)")
    return StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
