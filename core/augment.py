"""Data augmentation presets, applied to whole batches on the training device.

An ``augment`` setting is one preset name or several joined by '+', e.g. ``flip+diffaug``:
- image presets (``flip``, ``mild``) transform each real uint8 image before it reaches D.
  Each is a few batched tensor operations whose per-image parameters are drawn from the
  run's (checkpointed) CPU random stream, so a resumed run draws the same ones. ``mild`` is
  torchvision's ``RandomHorizontalFlip(0.5)``, ``RandomRotation(10, fill=255)`` and
  ``ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1)`` in that order, with the same
  parameter distributions (the jitter's three operations in a random order per image) and
  the same uint8 arithmetic, written for a batch instead of one image at a time;
- ``diffaug`` is DiffAugment (Zhao et al. 2020: colour, translation 1/8, cutout 1/2), a
  differentiable transform applied to real *and* fake images inside the critic.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry

ImageAugment = Callable[[torch.Tensor], torch.Tensor]  # uint8 N x 3 x H x W -> same


@dataclass(frozen=True)
class Preset:
    """An augmentation preset: a transform of real uint8 images (``image``), or, when
    ``differentiable``, DiffAugment's transform of real and fake images in the critic."""

    name: str
    image: ImageAugment | None = None
    differentiable: bool = False


AUGMENTS: Registry[Preset] = Registry("augment")


def register_augment(name: str):
    def deco(fn: ImageAugment) -> ImageAugment:
        AUGMENTS.register(name)(Preset(name, image=fn))
        return fn
    return deco


AUGMENTS.register("none")(Preset("none"))


@register_augment("flip")
def flip(images: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flipped = (torch.rand(len(images)) < 0.5).to(images.device)
    return torch.where(flipped.view(-1, 1, 1, 1), images.flip(-1), images)


def rotate(images: torch.Tensor, degrees: torch.Tensor, fill: int = 255,
           flip: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each uint8 image by its angle (counter-clockwise, degrees; a CPU tensor) about
    its centre, nearest neighbour, uncovered pixels ``fill``: torchvision's ``rotate`` for a
    batch, pixel for pixel. Each output pixel's source is found from the inverse rotation with
    grid_sample's coordinate arithmetic (align_corners=False) and gathered from the image
    padded with ``fill`` wide enough for the farthest source, so no pixel needs a range
    check. ``flip`` (per image) mirrors the image left-right first, by mirroring the source
    index: one gather for both."""
    b, c, h, w = images.shape
    device = images.device
    r = torch.deg2rad(-degrees.double())  # torchvision's inverse map rotates by -angle
    cos, sin = torch.cos(r), torch.sin(r)
    # A source column is (w-1)/2 + x cos + y sin (|x| <= (w-1)/2, |y| <= (h-1)/2), a row
    # likewise: the border is the farthest either falls outside the image, +1 for rounding.
    reach = torch.maximum((w - 1) * (cos.abs() - 1) + (h - 1) * sin.abs(),
                          (h - 1) * (cos.abs() - 1) + (w - 1) * sin.abs())
    pad = max(math.ceil(float(reach.max()) / 2), 0) + 1
    cos, sin = cos.float().to(device), sin.float().to(device)
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=device).view(1, 1, w)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=device).view(1, h, 1)
    ix = xs * (cos / (0.5 * w)).view(b, 1, 1) + ys * (sin / (0.5 * w)).view(b, 1, 1)
    iy = xs * (-sin / (0.5 * h)).view(b, 1, 1) + ys * (cos / (0.5 * h)).view(b, 1, 1)
    ix.add_(1).mul_(w * 0.5).sub_(0.5).round_()
    iy.add_(1).mul_(h * 0.5).sub_(0.5).round_()
    flip = torch.zeros(b, dtype=torch.bool) if flip is None else flip
    mirror = flip.to(device, torch.float32).view(b, 1, 1)
    padded_w = w + 2 * pad
    # Integers below 2**24 are exact in float32: the flat index is computed before the cast.
    index = ix.mul_(1.0 - 2.0 * mirror).add_(mirror * (w - 1) + pad * (padded_w + 1))
    index = index.add_(iy, alpha=padded_w).long().view(b, 1, h * w)
    padded = F.pad(images, [pad] * 4, value=fill).view(b, c, -1)
    return padded.gather(2, index.expand(b, c, -1)).view(b, c, h, w)


def jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter with per-image factors (N x 3: brightness, contrast, saturation) applied
    in per-image orders (N x 3, a permutation of 0, 1, 2 per row), with torchvision's uint8
    arithmetic: each operation blends with black (brightness), the mean grey level
    (contrast) or the grey image (saturation), then clamps and truncates to an integer.
    Every step blends the whole batch, each image with its own operation's target."""
    x = images.float()
    n = len(x)
    f = factors.gather(1, order).T.reshape(3, n, 1, 1, 1)  # per step
    keep_grey = (order == 2).T.reshape(3, n, 1, 1, 1).float()  # saturation: the grey image
    keep_mean = (order == 1).T.reshape(3, n, 1, 1, 1).float()  # contrast: its mean
    grey = x.new_empty(n, 1, *x.shape[2:])  # one buffer: a fresh large tensor costs page faults
    for step in range(3):
        r, g, b = x.unbind(1)
        torch.mul(r, 0.2989, out=grey[:, 0]).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_()
        mean = grey.mean(dim=(1, 2, 3), keepdim=True).mul_(keep_mean[step])
        other = grey.mul_(keep_grey[step]).add_(mean)  # black (brightness) is 0
        # floor, not trunc: the same on values >= 0, and several times faster on the CPU;
        # the cast to uint8 truncates the last step's.
        x.mul_(f[step]).addcmul_(other, 1.0 - f[step]).clamp_(0, 255)
        if step < 2:
            x.floor_()
    return x.to(torch.uint8)


def mild_params(n: int) -> dict[str, torch.Tensor]:
    """Per-image parameters of ``mild``, from the CPU random stream: a flip with p = 1/2, an
    angle uniform in [-10, 10] degrees, jitter factors uniform in [0.9, 1.1] and a uniformly
    random order of the three jitter operations (torchvision's distributions)."""
    return {"flip": torch.rand(n) < 0.5, "degrees": torch.empty(n).uniform_(-10.0, 10.0),
            "factors": torch.empty(n, 3).uniform_(0.9, 1.1), "order": torch.rand(n, 3).argsort(1)}


@register_augment("mild")
def mild(images: torch.Tensor) -> torch.Tensor:
    """The dissertation's: flip, a rotation of up to 10 degrees (white fill) and a colour
    jitter of 10 %, kept mild so the images stay in the target domain."""
    p = mild_params(len(images))
    rotated = rotate(images, p["degrees"], flip=p["flip"])
    return jitter(rotated, p["factors"].to(images.device), p["order"].to(images.device))


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                            indexing="ij")
    gy = (gy.unsqueeze(0) + dy + 1).clamp(0, h + 1)
    gx = (gx.unsqueeze(0) + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[bi, gy, gx].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment with the colour, translation and cutout policies."""
    return _cutout(_translation(_color(x)))


AUGMENTS.register("diffaug")(Preset("diffaug", differentiable=True))


@dataclass
class Augmentation:
    """The parsed ``augment`` setting."""

    image: list[ImageAugment]
    differentiable: bool

    def real_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the image presets to a uint8 batch, a fresh random draw per image."""
        for transform in self.image:
            images = transform(images)
        return images

    def critic_input(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x) if self.differentiable else x


def parse_augment(spec: str) -> Augmentation:
    """An ``augment`` setting: preset names joined by '+'."""
    names = [n.strip() for n in str(spec).split("+")]
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise GansweepError(f"augment: unknown preset {unknown[0]!r} in {spec!r}; valid: "
                            f"{', '.join(AUGMENTS.names())} (join several with '+')")
    presets = [AUGMENTS.get(n) for n in names]
    return Augmentation([p.image for p in presets if p.image is not None],
                        any(p.differentiable for p in presets))

