"""Image loading, subsets, batching, quantisation and augmentation."""
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import save_image

from gansweep.core.augment import diff_augment, parse_augment
from gansweep.core.data import BatchSampler, load_folder, load_image, quantize
from gansweep.core.errors import GansweepError


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


def test_sampler_epochs_and_too_few_images():
    s = BatchSampler(10, 4, seed=0, source="x")
    first_epoch = torch.cat([s.next(), s.next()])
    assert len(set(first_epoch.tolist())) == 8
    with pytest.raises(GansweepError, match="3 images, fewer than the batch size 4"):
        BatchSampler(3, 4, seed=0, source="x")


def test_quantize_matches_saved_png(tmp_path):
    x = torch.rand(5, 3, 8, 8) * 2.2 - 1.1  # include out-of-range values
    q = quantize(x)
    for i in range(5):
        buf = io.BytesIO()
        save_image(x[i] * 0.5 + 0.5, buf, format="png")
        back = torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(back, q[i])


def test_augmentations():
    imgs = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    mild = parse_augment("mild")
    out = mild.real_batch(imgs)
    assert out.dtype == torch.uint8 and out.shape == imgs.shape
    assert not parse_augment("none").differentiable
    assert parse_augment("flip+diffaug").differentiable
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None
    with pytest.raises(GansweepError, match="valid: none, flip, mild, diffaug"):
        parse_augment("cutmix")
