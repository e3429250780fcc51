"""Data augmentation presets.

An ``augment`` setting is one preset name or several joined by '+', e.g. ``flip+diffaug``:
- image presets (``flip``, ``mild``) transform each real image (torchvision.transforms.v2,
  uint8, per image) before it reaches D;
- ``diffaug`` is DiffAugment (Zhao et al. 2020: colour, translation 1/8, cutout 1/2), a
  differentiable transform applied to real *and* fake images inside the critic.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from gansweep.core.errors import GansweepError
from gansweep.core.registry import Registry

IMAGE_AUGMENTS: Registry[Callable[[], v2.Transform | None]] = Registry("augment")


@IMAGE_AUGMENTS.register("none")
def _none() -> None:
    return None


@IMAGE_AUGMENTS.register("flip")
def _flip() -> v2.Transform:
    return v2.RandomHorizontalFlip(0.5)


@IMAGE_AUGMENTS.register("mild")
def _mild() -> v2.Transform:
    # The dissertation's: flip + small rotation + colour jitter, kept mild so the
    # augmented images stay in the target domain.
    return v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.RandomRotation(10, fill=255),
        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
    ])


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

    image: v2.Transform | None
    differentiable: bool

    def real_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the image presets to a uint8 batch, a fresh random draw per image."""
        if self.image is None:
            return images
        return torch.stack([self.image(img) for img in images])

    def critic_input(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x) if self.differentiable else x


def parse_augment(spec: str) -> Augmentation:
    names = [n.strip() for n in str(spec).split("+")]
    valid = IMAGE_AUGMENTS.names() + list(DIFF_AUGMENTS)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise GansweepError(f"augment: unknown preset {unknown[0]!r} in {spec!r}; valid: "
                            f"{', '.join(valid)} (join several with '+')")
    transforms = [t for t in (IMAGE_AUGMENTS.get(n)() for n in names if n in IMAGE_AUGMENTS)
                  if t is not None]
    image = None if not transforms else transforms[0] if len(transforms) == 1 else v2.Compose(
        transforms)
    return Augmentation(image, any(n in DIFF_AUGMENTS for n in names))
