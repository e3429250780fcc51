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

The calibration is Zhang et al.'s: the linear weights w_l the ``lpips`` package (PyPI,
``pip install 'gansweep[lpips]'``) ships in its wheel (``lpips/weights/v0.1/alex.pth``,
``lin{l}.model.1.weight``), on torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``),
the pair ``lpips.LPIPS(net='alex')`` computes with; ours equals it on the same inputs
(tests/test_lpips.py). Where the weights come from:

1. a file (``lpips_weights``, ``--lpips-weights`` or ``$GANSWEEP_LPIPS_WEIGHTS``): either a
   state dict of ``LPIPS`` below (torchvision's AlexNet conv layers
   ``features.{0,3,6,8,10}.weight/bias`` and the linear weights renamed ``lins.{l}.weight``),
   or torchvision's AlexNet file itself, whose linear weights then come from the package
   (offline: copy ``alexnet-owt-7be5be79.pth`` to the machine and give its path);
2. otherwise the package's linear weights and torchvision's AlexNet from the torch hub cache
   (``$TORCH_HOME/hub/checkpoints``), downloaded there once if it is not.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import nn

from gansweep.core import extras
from gansweep.core.errors import GansweepError
from gansweep.core.numerics import own_rng
from gansweep.core.torch_files import check_file, load_torch_file

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


NEEDED_FOR = "intra_lpips's calibrated linear weights"


def resolve_lpips_weights(path: str | None) -> str | None:
    """The LPIPS weights file, as an absolute path (a sweep's trials run in other working
    directories): the option, else $GANSWEEP_LPIPS_WEIGHTS; None: the lpips package's
    linear weights on torchvision's AlexNet from the torch hub cache (``load_lpips``),
    refused in one line when the package is not installed. Downloads nothing."""
    path = path or os.environ.get("GANSWEEP_LPIPS_WEIGHTS")
    if path:
        check_file(path, "LPIPS weights")  # its layout is checked where it is loaded
        return str(Path(path).resolve())
    try:
        extras.check("lpips", "lpips", NEEDED_FOR)
    except GansweepError as e:
        raise GansweepError(f"metric 'intra_lpips' needs LPIPS weights: {e}; or pass "
                            f"--lpips-weights, set lpips_weights in the spec or "
                            f"$GANSWEEP_LPIPS_WEIGHTS (see core/lpips.py)") from None
    return None


def alexnet_weights() -> str:
    """torchvision's ImageNet AlexNet in the torch hub cache (downloaded there if absent,
    as torchvision does), as an absolute path; one line where it cannot be had."""
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), torch.hub.HASH_REGEX.search(
                path.name).group(1), progress=False)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash, Runtime
            raise GansweepError(f"LPIPS: cannot download torchvision's AlexNet weights to "
                                f"{path} ({str(e).splitlines()[0][:80]}); put "
                                f"{path.name} there, or give its path as --lpips-weights "
                                f"(core/lpips.py)") from None
    return str(path)


def package_linear_weights() -> dict[str, torch.Tensor]:
    """The lpips package's calibrated linear weights (its ``weights/v0.1/alex.pth``), in our
    names (``lins.{l}.weight``)."""
    package = extras.require("lpips", "lpips", NEEDED_FOR)
    path = Path(package.__file__).parent / "weights" / "v0.1" / "alex.pth"
    state = load_torch_file(path, "LPIPS linear weights")
    return {f"lins.{i}.weight": state[f"lin{i}.model.1.weight"] for i in range(len(CHANNELS))}


def load_lpips(path: str | None, device: str = "cpu") -> LPIPS:
    """LPIPS with the weights of ``path`` (a full LPIPS state dict, or torchvision's AlexNet
    with the lpips package's linear weights), or with None the package's linear weights on
    the torch hub cache's AlexNet."""
    return _load_lpips(path or alexnet_weights(), device)


@functools.lru_cache(maxsize=2)
def _load_lpips(path: str, device: str) -> LPIPS:
    with own_rng():  # building it draws initial weights: not from the run's stream
        net = LPIPS()
    try:
        state = load_torch_file(path, "LPIPS weights")
        if not isinstance(state, dict):
            raise GansweepError(f"LPIPS weights {path}: not a state dict")
        if not any(k.startswith("lins.") for k in state):  # torchvision's AlexNet file
            state = {**{k: v for k, v in state.items() if k.startswith("features.")},
                     **package_linear_weights()}
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
