"""Image-folder datasets held in memory as uint8, deterministic subsets, and batch sampling."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gansweep.core.errors import GansweepError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
# Larger images are refused before decoding: a decompression bomb, not a training image.
MAX_PIXELS = 8192 * 8192


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, sorted); an error if there are none."""
    root = Path(root)
    if not root.is_dir():
        raise GansweepError(f"{root}: not a directory")
    # os.walk, unlike Path.rglob before Python 3.13, follows linked (class) folders.
    files = sorted(Path(d) / f for d, _, names in os.walk(root, followlinks=True)
                   for f in names if Path(f).suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GansweepError(f"{root}: no images found (looked recursively for "
                            f"{', '.join(IMAGE_SUFFIXES)})")
    return files


ALPHA_MODES = ("white", "drop")


def _to_rgb(im: Image.Image, alpha: str) -> Image.Image:
    if alpha == "drop":  # pytorch-fid's behaviour: colour under transparent pixels shows
        return im.convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if (im.mode.startswith("I;16") or arr.max() > 255) else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, im).convert("RGB")
    return im.convert("RGB")


def load_image(path: Path, resolution: int | None, alpha: str = "white") -> np.ndarray:
    """One image as H x W x 3 uint8: alpha composited onto white (or dropped, as
    pytorch-fid does), then (if ``resolution``) the shorter side resized to it with bicubic
    antialiasing and the centre cropped."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise GansweepError(f"{path}: image of {im.width}x{im.height} pixels is too "
                                    f"large (limit {MAX_PIXELS} pixels)")
            im.load()
            rgb = _to_rgb(im, alpha)
    except GansweepError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise GansweepError(f"{path}: cannot read image ({e})") from None
    if resolution is not None:
        scale = resolution / min(rgb.size)
        w, h = max(resolution, round(rgb.width * scale)), max(resolution, round(rgb.height * scale))
        if (w, h) != rgb.size:
            rgb = rgb.resize((w, h), Image.BICUBIC)
        left, top = (w - resolution) // 2, (h - resolution) // 2
        rgb = rgb.crop((left, top, left + resolution, top + resolution))
    return np.asarray(rgb, dtype=np.uint8)


def _classes(root: Path, files: list[Path]) -> list[str]:
    loose = [p.name for p in files if p.parent == root]
    if loose:
        raise GansweepError(f"{root}: a class-conditional target keeps its images in one "
                            f"sub-folder per class, but {loose[0]} (and {len(loose) - 1} more) "
                            f"lie directly in it")
    names = sorted({p.relative_to(root).parts[0] for p in files})
    if len(names) < 2:
        raise GansweepError(f"{root}: a class-conditional target needs at least 2 class "
                            f"sub-folders, found {names}")
    return names


def class_names(root: str | Path) -> list[str]:
    """The classes of a target given as class sub-folders: each sub-folder of ``root`` that
    holds images (recursively) is one class, in sorted order; images directly in ``root``
    are an error, as is a single class."""
    return _classes(Path(root), list_images(root))


@dataclass
class ImageSet:
    """Images as an N x 3 x H x W uint8 tensor, with the files they came from and, for a
    target with class sub-folders, each image's class index into ``classes``."""

    images: torch.Tensor
    paths: list[str]
    labels: torch.Tensor | None = None
    classes: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, n: int | None, seed: int) -> ImageSet:
        """A deterministic subset of ``n`` images chosen by ``seed`` (all when n is None)."""
        if n is None or n == len(self):
            return self
        if not 1 <= n <= len(self):
            raise GansweepError(f"target_size: {n} is not between 1 and the {len(self)} images "
                                f"available")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        return self.select(idx)

    def select(self, idx: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[idx], [self.paths[i] for i in idx.tolist()],
                        None if self.labels is None else self.labels[idx], self.classes)

    def digest(self) -> str:
        """sha256 of the preprocessed pixels: identifies the data for caching."""
        h = hashlib.sha256(str(tuple(self.images.shape)).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        return h.hexdigest()


def load_folder(root: str | Path, resolution: int | None, alpha: str = "white",
                labelled: bool | None = False) -> ImageSet:
    """Load every image under ``root``. Without ``resolution`` all images must share a size.
    ``labelled``: each image's class is its sub-folder (``class_names``); True requires
    that layout, None uses it where the folder has it, False ignores it."""
    if alpha not in ALPHA_MODES:
        raise GansweepError(f"alpha: {alpha!r} is not one of {ALPHA_MODES}")
    paths = list_images(root)
    labels = classes = None
    if labelled is not False:
        try:
            classes = _classes(Path(root), paths)
        except GansweepError:
            if labelled:
                raise
    if classes is not None:
        labels = torch.tensor([classes.index(p.relative_to(root).parts[0]) for p in paths])
    arrays = [load_image(p, resolution, alpha) for p in paths]
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise GansweepError(f"{root}: images have different sizes {sorted(sizes)[:3]}...; "
                            f"give a resolution to resize them")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, [str(p) for p in paths], labels, classes)


SPLIT_FILE = "split.json"


def split_folder(root: str | Path, fraction: float, seed: int, out: str | Path
                 ) -> dict[str, list[str]]:
    """Split the images under ``root`` into two disjoint parts, ``out/A`` (a ``fraction`` of
    them, at least one) and ``out/B`` (the rest), by a permutation drawn from ``seed``
    (Yosinski et al.'s A/B split, as Denton et al. split ImageNet). The parts are folders of
    symbolic links mirroring ``root``'s sub-folders (classes stay classes), so A can be
    pretrained on and B be a sweep's target, whose FID reference is then B's images only.
    ``out/split.json`` records the source, fraction, seed and both file lists."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise GansweepError(f"split fraction: {fraction!r} must be strictly between 0 and 1")
    root = Path(root).resolve()
    files = list_images(root)
    n_a = round(fraction * len(files))
    if not 1 <= n_a <= len(files) - 1:
        raise GansweepError(f"{root}: {len(files)} images cannot be split {fraction} / "
                            f"{1 - fraction} with an image in each part")
    out = Path(out)
    if out.resolve().is_relative_to(root):  # its links would be images of the folder
        raise GansweepError(f"out {out}: inside the folder it splits ({root}); write it "
                            f"elsewhere")
    if out.exists() and any(out.iterdir()):
        raise GansweepError(f"{out}: exists and is not empty")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    parts = {"A": sorted(order[:n_a]), "B": sorted(order[n_a:])}
    listing = {}
    for name, idx in parts.items():
        rel = [str(files[i].relative_to(root)) for i in idx]
        for r in rel:
            link = out / name / r
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(root / r)
        listing[name] = rel
    (out / SPLIT_FILE).write_text(json.dumps({"source": str(root), "fraction": fraction,
                                              "seed": seed, **listing}, indent=1))
    return listing


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the generator's output range."""
    return images.float().div_(127.5).sub_(1.0)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 exactly as torchvision's save_image writes a PNG."""
    return (images.detach() * 0.5 + 0.5).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


class BatchSampler:
    """Draws batches without replacement within an epoch, from its own torch generator, so
    that its state can be checkpointed and resumed exactly. A set smaller than the batch (a
    10-shot target with StyleGAN2's batch of 16) fills each batch from as many consecutive
    epochs as it takes: n images in a batch of b each appear floor(b/n) or ceil(b/n) times."""

    def __init__(self, n: int, batch_size: int, seed: int, source: str):
        if n < 1:
            raise GansweepError(f"{source}: no images")
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._perm = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self._perm.numel():
            epochs = -(-self.batch_size // self.n)  # 1 unless the set is smaller than a batch
            self._perm = torch.cat([torch.randperm(self.n, generator=self.generator)
                                    for _ in range(epochs)])
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._perm, self._pos = state["perm"], state["pos"]
