"""Derived emoji folders for the source-choice and conditional studies (issue 7), made from
``../shared/data/emoji`` as links (nothing is copied or committed):

- ``runs/data/noto-people``: Noto's smileys, people and hands (code points 1F466-1F487,
  1F600-1F64F, 1F910-1F9FF): a dense source near the face target;
- ``runs/data/noto-flags``: Noto's flags (1F1E6-1F1FF pairs): a source far from it;
- ``runs/data/twemoji-colour/{yellow,other}``: the 118 Twemoji faces as two classes, by
  whether most of their opaque pixels are yellow (the classic smileys) or not.

    python -m benchmarks.make_emoji_data
"""
from __future__ import annotations

import re
import shutil

import numpy as np
from PIL import Image

from benchmarks._common import ROOT

EMOJI = ROOT.parent / "shared" / "data" / "emoji"
OUT = ROOT / "runs" / "data"
SOURCES = {"noto-people": r"^(1f46[6-9a-f]|1f47|1f48[0-7]|1f6[0-4]|1f9[1-9a-f])",
           "noto-flags": r"^1f1[ef]"}


def _link(files, folder) -> int:
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return len(files)


def _yellow(path) -> bool:
    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64)
    opaque = rgba[..., 3] > 128
    r, g, b = (rgba[..., c][opaque] for c in range(3))
    return bool(((r > 200) & (g > 150) & (b < 100)).mean() > 0.5)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    noto = sorted((EMOJI / "noto-emoji").glob("*.png"))
    for name, pattern in SOURCES.items():
        n = _link([f for f in noto if re.match(pattern, f.name)], OUT / name)
        print(f"{OUT / name}: {n} images")
    faces = sorted((EMOJI / "twemoji-faces").glob("*.png"))
    yellow = [f for f in faces if _yellow(f)]
    for name, files in (("yellow", yellow), ("other", [f for f in faces if f not in yellow])):
        n = _link(files, OUT / "twemoji-colour" / name)
        print(f"{OUT / 'twemoji-colour' / name}: {n} images")


if __name__ == "__main__":
    main()
