"""LPIPS (Zhang et al. 2018, AlexNet variant) and Intra-LPIPS (Ojha et al. 2021, CDC), the
diversity measure of the 10-shot protocol.

LPIPS(x, y) = sum over AlexNet's five ReLU outputs l of the spatial mean of
w_l . (f_l(x) - f_l(y))^2, where f_l is the feature map unit-normalised over channels and
w_l >= 0 a learned per-channel weight (a 1 x 1 convolution), on images in [-1, 1] shifted and
scaled as the LPIPS package does.

Intra-LPIPS: each generated image is assigned to the training image nearest to it in LPIPS;
within each such cluster, the mean LPIPS over all pairs of its generated images; the mean
over clusters with at least two members. Higher is more diverse: a generator that copies its
10 training images scores about 0.

Weights come from a file (``lpips_weights``, ``--lpips-weights`` or
``$GANSWEEP_LPIPS_WEIGHTS``): a state dict of ``LPIPS`` below, i.e. torchvision's AlexNet
conv layers (``features.{0,3,6,8,10}.weight/bias``, as in torchvision's
``alexnet-owt-7be5be79.pth``) and the LPIPS package's linear weights renamed ``lins.{l}.weight``
(its ``alex.pth`` holds them as ``lin{l}.model.1.weight``). Nothing is downloaded; the tests
use random weights, which test the arithmetic, not the perceptual calibration.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import nn

from gansweep.core.errors import GansweepError
from gansweep.core.numerics import own_rng

CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)  # indices of AlexNet's ReLUs in torchvision's ``features``
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU())
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def embed(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised feature maps of images in [-1, 1]."""
        x = (images - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def distance(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS between embedded images, pairwise along the batch (broadcasting)."""
        return sum(lin((fa - fb).pow(2)).mean((1, 2, 3))
                   for lin, fa, fb in zip(self.lins, a, b))


def resolve_lpips_weights(path: str | None) -> str:
    """The LPIPS weights file, as an absolute path (a sweep's trials run in other working
    directories): the option, else $GANSWEEP_LPIPS_WEIGHTS."""
    path = path or os.environ.get("GANSWEEP_LPIPS_WEIGHTS")
    if not path:
        raise GansweepError("metric 'intra_lpips' needs LPIPS weights: pass --lpips-weights, "
                            "set lpips_weights in the spec or $GANSWEEP_LPIPS_WEIGHTS (see "
                            "core/lpips.py for the file's layout)")
    return str(Path(path).resolve())


@functools.lru_cache(maxsize=2)
def load_lpips(path: str, device: str = "cpu") -> LPIPS:
    with own_rng():  # building it draws initial weights: not from the run's stream
        net = LPIPS()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k, _ in net.named_parameters() if k not in state]
        if missing:
            raise GansweepError(f"LPIPS weights {path}: no {missing[0]!r} (and "
                                f"{len(missing) - 1} more; see core/lpips.py for the layout)")
        net.load_state_dict({**net.state_dict(), **state}, strict=True)  # buffers: ours
    except (OSError, RuntimeError, AttributeError) as e:
        raise GansweepError(f"LPIPS weights {path}: {str(e).splitlines()[0][:160]}") from None
    return net.eval().requires_grad_(False).to(device)


def _embed(net: LPIPS, images: torch.Tensor, batch: int = 64) -> list[torch.Tensor]:
    """Embeddings of uint8 images (N x 3 x H x W)."""
    device = net.shift.device
    parts = [net.embed(images[i:i + batch].to(device).float() / 127.5 - 1)
             for i in range(0, len(images), batch)]
    return [torch.cat(layer) for layer in zip(*parts)]


@torch.no_grad()
def intra_lpips(net: LPIPS, generated: torch.Tensor, training: torch.Tensor,
                max_per_cluster: int = 50) -> float:
    """CDC's Intra-LPIPS of uint8 ``generated`` images against the uint8 ``training``
    images (at most ``max_per_cluster`` images of a cluster are paired, the first ones)."""
    gen, train = _embed(net, generated), _embed(net, training)
    # One pass per training image (10), each against every generated image by broadcasting.
    nearest = torch.stack([net.distance(gen, [t[j:j + 1] for t in train])
                           for j in range(len(training))], 1).argmin(1)
    means = []
    for j in range(len(training)):
        members = (nearest == j).nonzero().flatten()[:max_per_cluster]
        if len(members) < 2:
            continue
        a, b = torch.triu_indices(len(members), len(members), 1)
        d = net.distance([g[members[a]] for g in gen], [g[members[b]] for g in gen])
        means.append(d.mean())
    if not means:
        return float("nan")
    return float(torch.stack(means).mean())
