"""Image loading, subsets, A/B splits, batching, quantisation and augmentation."""
import io
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import save_image

from gansweep.core.augment import diff_augment, jitter, mild_params, parse_augment, rotate
from gansweep.core.data import (
    BatchSampler,
    list_images,
    load_folder,
    load_image,
    quantize,
    split_folder,
)
from gansweep.core.errors import GansweepError
from tests.helpers import assert_one_clear_line, cli_in_process

from .conftest import EMOJI


def _save(im: Image.Image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    rgba.putpixel((0, 0), (200, 0, 0, 255))
    assert tuple(load_image(_save(rgba, tmp_path / "a.png"), None)[1, 1]) == (255, 255, 255)
    assert tuple(load_image(tmp_path / "a.png", None)[0, 0]) == (200, 0, 0)
    assert tuple(load_image(tmp_path / "a.png", None, alpha="drop")[1, 1]) == (10, 20, 30)
    gray = _save(Image.new("L", (8, 8), 77), tmp_path / "g.png")
    assert tuple(load_image(gray, None)[3, 3]) == (77, 77, 77)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 9, 99, 199] + [0] * 762)
    pal.info["transparency"] = 1
    assert tuple(load_image(_save(pal, tmp_path / "p.png", transparency=1), None)[2, 2]) == \
        (255, 255, 255)
    deep = Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16))  # 128 * 257
    assert tuple(load_image(_save(deep, tmp_path / "d16.png"), None)[0, 0]) == (128, 128, 128)
    cmyk = _save(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), tmp_path / "c.jpg")
    assert load_image(cmyk, None).shape == (8, 8, 3)


def test_resize_and_center_crop(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    for x in range(10, 30):
        for y in range(20):
            im.putpixel((x, y), (255, 255, 255))
    arr = load_image(_save(im, tmp_path / "wide.png"), 16)
    assert arr.shape == (16, 16, 3)
    assert arr[:, 2:14].min() > 200  # the white centre survives the crop


def test_recursive_formats_and_errors(tmp_path):
    for i, ext in enumerate(["png", "jpg", "webp", "bmp"]):
        _save(Image.new("RGB", (16, 16), (i * 40, 0, 0)), tmp_path / "d" / f"s{i}" / f"x.{ext}")
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    assert len(load_folder(tmp_path / "d", 8)) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(GansweepError, match="no images found"):
        load_folder(tmp_path / "empty", 8)
    good = _save(Image.new("RGB", (16, 16)), tmp_path / "t" / "good.png")
    broken = tmp_path / "t" / "broken.png"
    broken.write_bytes(good.read_bytes()[:40])
    with pytest.raises(GansweepError, match="broken.png: cannot read image"):
        load_folder(tmp_path / "t", 8)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "zero.png").write_bytes(b"")
    with pytest.raises(GansweepError, match="zero.png: cannot read image"):
        load_folder(tmp_path / "z", 8)


def test_subset_is_deterministic(faces):
    full = load_folder(faces, 32)
    a, b, c = full.subset(10, 1), full.subset(10, 1), full.subset(10, 2)
    assert a.paths == b.paths and a.paths != c.paths and len(a) == 10
    assert full.subset(None, 0) is full
    with pytest.raises(GansweepError, match="target_size: 41"):
        full.subset(41, 0)


def test_sampler_epochs_and_sets_smaller_than_a_batch():
    s = BatchSampler(10, 4, seed=0, source="x")
    first_epoch = torch.cat([s.next(), s.next()])
    assert len(set(first_epoch.tolist())) == 8
    few = BatchSampler(10, 16, seed=0, source="x")  # 10-shot, StyleGAN2's batch
    for _ in range(3):
        counts = torch.bincount(few.next(), minlength=10)
        assert counts.sum() == 16 and set(counts.tolist()) == {1, 2}
    with pytest.raises(GansweepError, match="x: no images"):
        BatchSampler(0, 4, seed=0, source="x")


def test_quantize_matches_saved_png(tmp_path):
    x = torch.rand(5, 3, 8, 8) * 2.2 - 1.1  # include out-of-range values
    q = quantize(x)
    for i in range(5):
        buf = io.BytesIO()
        save_image(x[i] * 0.5 + 0.5, buf, format="png")
        back = torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(back, q[i])


def test_augmentations():
    assert not parse_augment("none").differentiable and not parse_augment("none").image
    assert parse_augment("flip+diffaug").differentiable
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None
    with pytest.raises(GansweepError, match="valid: none, flip, mild, diffaug"):
        parse_augment("cutmix")


def _emoji(n: int = 24) -> torch.Tensor:
    return load_folder(EMOJI / "twemoji-faces", 32).images[:n]


def test_mild_is_torchvisions_transform_for_a_batch():
    """For the same parameters, the batched flip, rotation and colour jitter give exactly
    the pixels of torchvision's per-image functions (what 'mild' used to run image by
    image)."""
    images = _emoji()
    torch.manual_seed(3)
    p = mild_params(len(images))
    assert 0 < p["flip"].sum() < len(images)
    ours = jitter(rotate(images, p["degrees"], flip=p["flip"]), p["factors"], p["order"])
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation]
    for img, flip, degrees, factors, order, out in zip(images, p["flip"], p["degrees"],
                                                       p["factors"], p["order"], ours):
        ref = TF.rotate(TF.hflip(img) if flip else img, float(degrees), fill=255)
        for k in order.tolist():
            ref = ops[k](ref, float(factors[k]))
        assert torch.equal(out, ref)
    assert not torch.equal(ours, images)


@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_rotate_is_torchvisions_at_any_angle(size):
    """The fill border is sized from the angles: wide ones and non-square images too."""
    images = _emoji(16)[:, :, :size[0], :size[1]].contiguous()
    torch.manual_seed(5)
    degrees, flip = torch.empty(16).uniform_(-180, 180), torch.rand(16) < 0.5
    ours = rotate(images, degrees, flip=flip)
    for img, d, f, out in zip(images, degrees, flip, ours):
        assert torch.equal(out, TF.rotate(TF.hflip(img) if f else img, float(d), fill=255))


def test_mild_parameters_have_torchvisions_distributions():
    torch.manual_seed(0)
    p = mild_params(4000)
    rotation = v2.RandomRotation(10, fill=255)
    jitter_tv = v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1)
    theirs = [rotation.make_params([]) for _ in range(4000)]
    tv_jitter = [jitter_tv.make_params([]) for _ in range(4000)]
    assert stats.ks_2samp(p["degrees"], [t["angle"] for t in theirs]).pvalue > 1e-3
    for k, name in enumerate(("brightness_factor", "contrast_factor", "saturation_factor")):
        assert stats.ks_2samp(p["factors"][:, k], [t[name] for t in tv_jitter]).pvalue > 1e-3
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.03
    # The jitter's order: each of the 6 orders of the 3 operations equally likely.
    ours = Counter(tuple(o) for o in p["order"].tolist())
    tv = Counter(tuple(i for i in t["fn_idx"].tolist() if i < 3) for t in tv_jitter)
    assert set(ours) == set(tv) and len(ours) == 6
    assert stats.chisquare(list(ours.values())).pvalue > 1e-3


def test_batched_augmentations_are_deterministic_and_change_the_batch():
    images = _emoji(16)
    for name in ("flip", "mild"):
        aug = parse_augment(name)
        torch.manual_seed(7)
        first = aug.real_batch(images)
        torch.manual_seed(7)
        assert torch.equal(aug.real_batch(images), first)  # the run's stream: resume is exact
        assert first.dtype == torch.uint8 and first.shape == images.shape
        assert not torch.equal(first, images)
    torch.manual_seed(1)
    flipped = parse_augment("flip").real_batch(images)
    same = [torch.equal(a, b) for a, b in zip(flipped, images)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(mirrored) and any(same)


def test_ab_split_is_disjoint_complete_and_deterministic(faces, tmp_path):
    parts = split_folder(faces, 0.25, 3, tmp_path / "s")
    files = {str(p.relative_to(faces)) for p in list_images(faces)}
    assert len(parts["A"]) == 10 and len(parts["B"]) == 30
    assert set(parts["A"]).isdisjoint(parts["B"]) and set(parts["A"]) | set(parts["B"]) == files
    assert split_folder(faces, 0.25, 3, tmp_path / "again") == parts
    assert split_folder(faces, 0.25, 4, tmp_path / "other")["A"] != parts["A"]
    b = load_folder(tmp_path / "s" / "B", 32)  # a target like any folder: B's images only
    assert b.paths == [str(tmp_path / "s" / "B" / r) for r in parts["B"]]
    assert torch.equal(b.images[0], load_folder(faces, 32).select(
        torch.tensor([sorted(files).index(parts["B"][0])])).images[0])
    assert json.loads((tmp_path / "s" / "split.json").read_text())["B"] == parts["B"]


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_split_fraction_outside_the_open_interval(faces, tmp_path, fraction):
    assert_one_clear_line(cli_in_process("split", faces, "--fraction", fraction, "--out",
                                         tmp_path / "s"), "split",
                          f"split fraction: {float(fraction)} must be strictly between 0 and 1")
