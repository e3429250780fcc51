"""SNGAN (Miyato et al. 2018) as Denton et al. transfer it, in torch-mimicry's layout.

G: ``fc`` (linear z -> ngf x 4 x 4), residual up-blocks ``block2``... (BN-ReLU-upsample-conv-
BN-ReLU-conv, with an upsample-conv shortcut), ``out`` (BN-ReLU-conv-tanh).
D: ``block1`` (the optimised first block), residual blocks ``block2``..., ``fc`` (ReLU, sum
over space, linear), every weight spectrally normalised.

| resolution | G units (L_G)                               | D units (L_D)                        |
|------------|---------------------------------------------|--------------------------------------|
| 32         | fc block2 block3 block4 out (5)             | block1 block2 block3 block4 fc (5)   |
| 48         | fc block2 block3 block4 out (5)             | block1 ... block5 fc (6)             |
| 64         | fc block2 block3 block4 block5 out (6)      | block1 ... block5 fc (6)             |

At 32 px all blocks have ``width`` channels (G) / ``d_width`` (D) and only D's block1 and
block2 downsample. At 48 and 64 px G halves its channels in each block (width -> width/8 at
48, width/16 at 64) and D doubles them (d_width/16 -> d_width); at 64 px every D block
downsamples, at 48 px all but block5 (48 -> 24 -> 12 -> 6 -> 3 -> 3). G starts from 4 x 4,
except at 48 px, from 6 x 6. These are torch-mimicry's SNGANGenerator32/48/64 and
SNGANDiscriminator32/48/64; ``core.foreign`` loads their checkpoints.

Spectral norm is ``SNConv2d``/``SNLinear``: the semantics and state-dict entries of
``torch.nn.utils.spectral_norm`` (``weight_orig``, ``weight_u``, ``weight_v``; one power
iteration per train-mode forward, none in eval mode), written out so that the treatments
can see it. How each treatment meets it (also in core.treatments):
- freeze: no power iteration; u and v stay the source's, so the unit computes exactly the
  source's normalised weight (its raw weight cannot change, so there is nothing to track);
- adafm: gamma and beta modulate the raw weight, which is then normalised (W' = SN(gamma W +
  beta)): D stays spectrally normalised, which SNGAN's training relies on, and at gamma = 1,
  beta = 0 it is the source's layer; u and v follow the modulated weight;
- finetune / reinit: as in SNGAN's own training (reinit also draws new u and v).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.models import ArchConfig, FilterShift, TransferNet, register_arch

SN_EPS = 1e-12


class SpectralNorm:
    """Mixin for a layer whose ``weight`` is ``weight_orig / sigma``: sigma = u . (W v), W =
    weight_orig as an (out x rest) matrix; in train mode one power iteration updates u, v
    first, unless the raw weight is frozen (see the module docstring)."""

    weight_orig: torch.Tensor
    weight_u: torch.Tensor
    weight_v: torch.Tensor

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # the layer's own constructor makes ``weight``
        weight = self._parameters.pop("weight")
        self.weight_orig = nn.Parameter(weight.detach())
        self.register_buffer("weight_u", torch.empty(weight.shape[0]))
        self.register_buffer("weight_v", torch.empty(weight[0].numel()))
        self.reset_vectors()

    def reset_parameters(self) -> None:
        if "weight" in self._parameters:  # called by the layer's constructor
            return super().reset_parameters()
        _sngan_init(self)
        self.reset_vectors()

    def reset_vectors(self) -> None:
        with torch.no_grad():
            self.weight_u.copy_(F.normalize(torch.randn_like(self.weight_u), dim=0, eps=SN_EPS))
            self.weight_v.copy_(F.normalize(torch.randn_like(self.weight_v), dim=0, eps=SN_EPS))

    def normalized_weight(self) -> torch.Tensor:
        weight = self.weight_orig  # modulated, when AdaFM parametrizes weight_orig
        mat = weight.reshape(weight.shape[0], -1)
        u, v = self.weight_u, self.weight_v
        if self.training and weight.requires_grad:
            with torch.no_grad():  # the same ops, in the same order, as torch's spectral_norm
                v = F.normalize(torch.mv(mat.t(), u), dim=0, eps=SN_EPS, out=self.weight_v)
                u = F.normalize(torch.mv(mat, v), dim=0, eps=SN_EPS, out=self.weight_u)
            u, v = u.clone(), v.clone()
        return weight / torch.dot(u, torch.mv(mat, v))


class SNConv2d(SpectralNorm, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class SNLinear(SpectralNorm, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


def _sngan_init(m: nn.Module) -> None:
    """torch-mimicry's initialisation: Xavier-uniform, gain sqrt(2) inside residual paths
    (``c1``, ``c2``; marked ``gain2``), 1 elsewhere; biases zero."""
    weight = m.weight_orig if isinstance(m, SpectralNorm) else \
        m.weight if isinstance(m, (nn.Conv2d, nn.Linear)) else None
    if weight is None:
        return
    with torch.no_grad():
        nn.init.xavier_uniform_(weight, math.sqrt(2) if getattr(m, "gain2", False) else 1.0)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _conv(c_in: int, c_out: int, k: int, spectral: bool, gain2: bool = False) -> nn.Conv2d:
    conv = (SNConv2d if spectral else nn.Conv2d)(c_in, c_out, k, 1, k // 2)
    conv.gain2 = gain2
    return conv


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class GBlock(nn.Module):
    """Residual: BN-ReLU-up-c1-BN-ReLU-c2; shortcut: up-c_sc."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.b1, self.shift1 = nn.BatchNorm2d(c_in), FilterShift(c_in)
        self.c1 = _conv(c_in, c_out, 3, False, gain2=True)
        self.b2, self.shift2 = nn.BatchNorm2d(c_out), FilterShift(c_out)
        self.c2 = _conv(c_out, c_out, 3, False, gain2=True)
        self.c_sc = _conv(c_in, c_out, 1, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(_up(F.relu(self.shift1(self.b1(x)))))
        h = self.c2(F.relu(self.shift2(self.b2(h))))
        return h + self.c_sc(_up(x))


class DBlock(nn.Module):
    """Residual: ReLU-c1-ReLU-c2(-avgpool); shortcut: c_sc(-avgpool), or identity.

    torch-mimicry applies its first ReLU in place to the block's input, so its shortcut
    sees ReLU(x), not x; its checkpoints are only reproduced this way, so this block does
    the same on purpose. ``optimized``: the first block (c1-ReLU-c2-pool; pool-c_sc), on the
    image itself."""

    def __init__(self, c_in: int, c_out: int, down: bool, optimized: bool = False):
        super().__init__()
        self.down, self.optimized = down, optimized
        self.c1 = _conv(c_in, c_in if not optimized else c_out, 3, True, gain2=True)
        self.shift = FilterShift(self.c1.out_channels)
        self.c2 = _conv(self.c1.out_channels, c_out, 3, True, gain2=True)
        if optimized or down or c_in != c_out:
            self.c_sc = _conv(c_in, c_out, 1, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.optimized:
            h = F.avg_pool2d(self.c2(F.relu(self.shift(self.c1(x)))), 2)
            return h + self.c_sc(F.avg_pool2d(x, 2))
        x = F.relu(x)
        h = self.c2(F.relu(self.shift(self.c1(x))))
        sc = self.c_sc(x) if hasattr(self, "c_sc") else x
        if self.down:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class GIn(nn.Module):
    """z -> linear -> width x bottom x bottom."""

    def __init__(self, z_dim: int, channels: int, bottom: int):
        super().__init__()
        self.bottom = bottom
        self.l1 = nn.Linear(z_dim, channels * bottom ** 2)
        self.shift = FilterShift(channels * bottom ** 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.shift(self.l1(z)).view(z.shape[0], -1, self.bottom, self.bottom)


class GOut(nn.Module):
    """BN-ReLU-conv-tanh to RGB."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm, self.shift = nn.BatchNorm2d(channels), FilterShift(channels)
        self.conv = _conv(channels, 3, 3, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(F.relu(self.shift(self.norm(x)))))


class DOut(nn.Module):
    """ReLU, sum over space, spectrally normalised linear logit."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear = SNLinear(channels, 1)
        self.shift = FilterShift(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift(self.linear(F.relu(x).sum(dim=(2, 3))))


# resolution: (G's first feature map, G's up-blocks, D's residual blocks that halve their input)
LAYOUT = {32: (4, 3, (2,)), 48: (6, 3, (2, 3, 4)), 64: (4, 4, (2, 3, 4, 5))}


def sngan_channels(cfg: ArchConfig) -> tuple[list[int], list[int]]:
    """G's channels from its first feature map to the last block, D's from block1 to the
    last block."""
    w, dw = cfg.width, cfg.d_width or cfg.width
    ups = LAYOUT[cfg.resolution][1]
    if cfg.resolution == 32:
        return [w] * (ups + 1), [dw] * 4
    return [w // 2 ** i for i in range(ups + 1)], [dw // 2 ** i for i in range(4, -1, -1)]


class SNGANGenerator(TransferNet):
    def __init__(self, cfg: ArchConfig):
        g, _ = sngan_channels(cfg)
        units: list[tuple[str, nn.Module]] = [
            ("fc", GIn(cfg.z_dim, g[0], LAYOUT[cfg.resolution][0]))]
        units += [(f"block{i + 2}", GBlock(c_in, c_out))
                  for i, (c_in, c_out) in enumerate(zip(g[:-1], g[1:]))]
        units.append(("out", GOut(g[-1])))
        super().__init__(units, _sngan_init)
        self.z_dim = cfg.z_dim


class SNGANDiscriminator(TransferNet):
    def __init__(self, cfg: ArchConfig):
        _, d = sngan_channels(cfg)
        units: list[tuple[str, nn.Module]] = [("block1", DBlock(3, d[0], True, optimized=True))]
        halving = LAYOUT[cfg.resolution][2]
        for i, (c_in, c_out) in enumerate(zip(d[:-1], d[1:])):
            units.append((f"block{i + 2}", DBlock(c_in, c_out, i + 2 in halving)))
        units.append(("fc", DOut(d[-1])))
        super().__init__(units, _sngan_init)


@register_arch("sngan", resolutions=tuple(LAYOUT), d_norms=("spectral",), options=("d_width",))
def build_sngan(cfg: ArchConfig) -> tuple[TransferNet, TransferNet]:
    """Miyato et al.'s SNGAN in torch-mimicry's configuration (Denton et al.'s network)."""
    return SNGANGenerator(cfg), SNGANDiscriminator(cfg)
