"""Small synthetic image domains, so the demo and the tests need no data of the user's.

``blobs`` (the source domain) are random coloured ellipses; ``faces`` (the target) are the
same round shapes drawn as simple face emoji: a disc with two eyes and a mouth. As with
the shared emoji data, the two domains share low-level structure but differ in content.
"""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from gansweep.core.errors import GansweepError

STYLES = ("blobs", "faces")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(30, 230) for _ in range(3))  # type: ignore[return-value]


def _blob(draw: ImageDraw.ImageDraw, size: int, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 3)):
        w, h = rng.uniform(0.3, 0.8) * size, rng.uniform(0.3, 0.8) * size
        x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
        draw.ellipse((x, y, x + w, y + h), fill=_colour(rng) + (255,))


def _face(draw: ImageDraw.ImageDraw, size: int, rng: random.Random) -> None:
    r = rng.uniform(0.36, 0.46) * size
    cx, cy = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
    skin = (rng.randint(220, 255), rng.randint(170, 220), rng.randint(20, 90), 255)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=skin)
    eye = max(1.0, r * rng.uniform(0.1, 0.18))
    for sx in (-1, 1):
        ex, ey = cx + sx * r * 0.38, cy - r * rng.uniform(0.15, 0.35)
        draw.ellipse((ex - eye, ey - eye * 1.4, ex + eye, ey + eye * 1.4), fill=(60, 40, 20, 255))
    mw, mh = r * rng.uniform(0.5, 0.9), r * rng.uniform(0.15, 0.5)
    box = (cx - mw / 2, cy + r * 0.2, cx + mw / 2, cy + r * 0.2 + mh)
    draw.chord(box, 0, 180, fill=(120, 30, 30, 255))


def make_domain(out: str | Path, style: str, n: int, size: int = 32, seed: int = 0) -> Path:
    """Write ``n`` RGBA PNGs (transparent background) of a style into ``out``."""
    if style not in STYLES:
        raise GansweepError(f"style: {style!r} is not one of {STYLES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{style}-{seed}")
    painter = _blob if style == "blobs" else _face
    for i in range(n):
        im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        painter(ImageDraw.Draw(im), size, rng)
        im.save(out / f"{style}_{i:05d}.png")
    return out
