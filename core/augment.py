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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry

ImageAugment = Callable[[torch.Tensor], torch.Tensor]  # uint8 N x 3 x H x W -> same
IMAGE_AUGMENTS: Registry[ImageAugment | None] = Registry("augment")
IMAGE_AUGMENTS.register("none")(None)


@IMAGE_AUGMENTS.register("flip")
def flip(images: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flipped = (torch.rand(len(images)) < 0.5).to(images.device)
    return torch.where(flipped.view(-1, 1, 1, 1), images.flip(-1), images)


def rotate(images: torch.Tensor, degrees: torch.Tensor, fill: int = 255,
           flip: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each uint8 image by its angle (counter-clockwise, degrees) about its centre,
    nearest neighbour, uncovered pixels ``fill``: torchvision's ``rotate`` for a batch, pixel
    for pixel. Each output pixel's source is found from the inverse rotation with
    grid_sample's coordinate arithmetic (align_corners=False) and gathered; an uncovered
    pixel gathers from an extra ``fill`` pixel. ``flip`` (per image) mirrors the image
    left-right first, by mirroring the source index: one gather for both."""
    b, c, h, w = images.shape
    device = images.device
    r = torch.deg2rad(-degrees.double())  # torchvision's inverse map rotates by -angle
    cos, sin = torch.cos(r).float().to(device), torch.sin(r).float().to(device)
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=device).view(1, 1, w)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=device).view(1, h, 1)
    gx = xs * (cos / (0.5 * w)).view(b, 1, 1) + ys * (sin / (0.5 * w)).view(b, 1, 1)
    gy = xs * (-sin / (0.5 * h)).view(b, 1, 1) + ys * (cos / (0.5 * h)).view(b, 1, 1)
    ix = ((gx + 1) * (w * 0.5) - 0.5).round_()
    iy = ((gy + 1) * (h * 0.5) - 0.5).round_()
    cx, cy = ix.clamp(0, w - 1), iy.clamp(0, h - 1)
    inside = (cx == ix).logical_and_(cy == iy)
    if flip is not None:
        cx = torch.where(flip.view(b, 1, 1), (w - 1) - cx, cx)
    source = torch.where(inside, cy.mul_(w).add_(cx), h * w).long().view(b, 1, h * w)
    pixels = torch.cat([images.reshape(b, c, h * w), images.new_full((b, c, 1), fill)], 2)
    return pixels.gather(2, source.expand(b, c, -1)).view(b, c, h, w)


def jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter with per-image factors (N x 3: brightness, contrast, saturation) applied
    in per-image orders (N x 3, a permutation of 0, 1, 2 per row), with torchvision's uint8
    arithmetic: each operation blends with black (brightness), the mean grey level
    (contrast) or the grey image (saturation), then clamps and truncates to an integer.
    Every step blends the whole batch, each image with its own operation's target."""
    x = images.float()
    n = len(x)
    for step in range(3):
        op = order[:, step].view(n, 1, 1, 1)
        f = factors.gather(1, order[:, step:step + 1]).view(n, 1, 1, 1)
        grey = x[:, 0:1] * 0.2989
        grey.add_(x[:, 1:2], alpha=0.587).add_(x[:, 2:3], alpha=0.114).floor_()
        other = torch.where(op == 2, grey, grey.mean(dim=(1, 2, 3), keepdim=True) * (op == 1))
        # floor, not trunc: the same on values >= 0, and several times faster on the CPU.
        x.mul_(f).addcmul_(other, 1.0 - f).clamp_(0, 255).floor_()
    return x.to(torch.uint8)


def mild_params(n: int) -> dict[str, torch.Tensor]:
    """Per-image parameters of ``mild``, from the CPU random stream: a flip with p = 1/2, an
    angle uniform in [-10, 10] degrees, jitter factors uniform in [0.9, 1.1] and a uniformly
    random order of the three jitter operations (torchvision's distributions)."""
    return {"flip": torch.rand(n) < 0.5, "degrees": torch.empty(n).uniform_(-10.0, 10.0),
            "factors": torch.empty(n, 3).uniform_(0.9, 1.1), "order": torch.rand(n, 3).argsort(1)}


@IMAGE_AUGMENTS.register("mild")
def mild(images: torch.Tensor) -> torch.Tensor:
    """The dissertation's: flip, a rotation of up to 10 degrees (white fill) and a colour
    jitter of 10 %, kept mild so the images stay in the target domain."""
    p = {k: v.to(images.device) for k, v in mild_params(len(images)).items()}
    return jitter(rotate(images, p["degrees"], flip=p["flip"]), p["factors"], p["order"])


DIFF_AUGMENTS = ("diffaug",)


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
    names = [n.strip() for n in str(spec).split("+")]
    valid = IMAGE_AUGMENTS.names() + list(DIFF_AUGMENTS)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise GansweepError(f"augment: unknown preset {unknown[0]!r} in {spec!r}; valid: "
                            f"{', '.join(valid)} (join several with '+')")
    image = [IMAGE_AUGMENTS.get(n) for n in names if n in IMAGE_AUGMENTS]
    return Augmentation([t for t in image if t is not None],
                        any(n in DIFF_AUGMENTS for n in names))

