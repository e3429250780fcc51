"""Small synthetic image domains, so the demo and the tests need no data of the user's.

- ``faces``: round yellow smileys (two eyes, a smile): the demo's source domain.
- ``cats``: cat faces in grey, ginger or brown fur, with ears, green eyes with slit pupils, a
  pink nose and whiskers: the demo's target. The same kind of object as ``faces`` (a round
  face, two eyes, a mouth region, in the same place), in other colours and shapes, as the
  papers' sources and targets are (human faces and cartoon faces, ImageNet and LSUN).
- ``blobs``: random coloured ellipses (the tests' cheap source domain).
"""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from gansweep.core.errors import GansweepError


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


def _fur(rng: random.Random) -> tuple[int, int, int, int]:
    grey = rng.randint(90, 140)
    return rng.choice([(grey, grey, grey),
                       (rng.randint(200, 240), rng.randint(120, 160), rng.randint(40, 80)),
                       (rng.randint(60, 90), rng.randint(50, 70), rng.randint(40, 60))]) + (255,)


def _cat(draw: ImageDraw.ImageDraw, size: int, rng: random.Random) -> None:
    r = rng.uniform(0.30, 0.38) * size
    cx, cy = size / 2 + rng.uniform(-1.5, 1.5), size / 2 + rng.uniform(0.5, 3)
    fur = _fur(rng)
    for sx in (-1, 1):  # ears
        base = cx + sx * r * 0.55
        tip = (cx + sx * r * rng.uniform(0.75, 0.95), cy - r * rng.uniform(1.35, 1.6))
        draw.polygon([(base - r * 0.35, cy - r * 0.55), (base + r * 0.35, cy - r * 0.55), tip],
                     fill=fur)
    draw.ellipse((cx - r, cy - r * 0.9, cx + r, cy + r * 0.9), fill=fur)
    iris = (rng.randint(120, 200), rng.randint(180, 230), rng.randint(40, 90), 255)
    for sx in (-1, 1):
        ex, ey = cx + sx * r * 0.4, cy - r * 0.15
        draw.ellipse((ex - r * 0.2, ey - r * 0.2, ex + r * 0.2, ey + r * 0.2), fill=iris)
        draw.ellipse((ex - r * 0.06, ey - r * 0.18, ex + r * 0.06, ey + r * 0.18),
                     fill=(10, 10, 10, 255))
    draw.polygon([(cx - r * 0.12, cy + r * 0.2), (cx + r * 0.12, cy + r * 0.2),
                  (cx, cy + r * 0.33)], fill=(230, 120, 140, 255))
    for sx in (-1, 1):  # whiskers
        for dy in (0.3, 0.45):
            end = dy - 0.1 + (0.2 if dy > 0.4 else 0.0)
            draw.line((cx + sx * r * 0.2, cy + r * dy, cx + sx * r * 1.05, cy + r * end),
                      fill=(240, 240, 240, 255), width=1)


PAINTERS = {"blobs": _blob, "faces": _face, "cats": _cat}


def make_domain(out: str | Path, style: str, n: int, size: int = 32, seed: int = 0) -> Path:
    """Write ``n`` RGBA PNGs (transparent background) of a style into ``out``."""
    if style not in PAINTERS:
        raise GansweepError(f"style: {style!r} is not one of {tuple(PAINTERS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{style}-{seed}")
    for i in range(n):
        im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        PAINTERS[style](ImageDraw.Draw(im), size, rng)
        im.save(out / f"{style}_{i:05d}.png")
    return out
