"""FID equals pytorch-fid on the same files; KID is unbiased; real statistics are cached."""
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfid_inception

from core.data import load_folder
from core.errors import GansweepError
from core.metrics import (
    FeatureStats,
    InceptionFeatures,
    fid,
    get_extractor,
    kid,
    real_stats,
    resolve_weights,
)

from .conftest import EMOJI


def _copy(src: Path, dst: Path, n: int, rgb: bool) -> Path:
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.png"))[:n]:
        if rgb:  # composite onto white so both tools see the same RGB pixels
            im = Image.open(f).convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            Image.alpha_composite(bg, im).convert("RGB").save(dst / f.name)
        else:
            shutil.copy(f, dst / f.name)
    return dst


def _pytorch_fid(paths, weights) -> float:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    with mock.patch.object(pfid_inception, "load_state_dict_from_url", lambda *a, **k: state):
        return fid_score.calculate_fid_given_paths([str(p) for p in paths], 50, "cpu", 2048,
                                                   num_workers=0)


@pytest.mark.slow
@pytest.mark.parametrize("rgb", [True, False])
def test_fid_equals_pytorch_fid(tmp_path, weights, rgb):
    a = _copy(EMOJI / "noto-emoji", tmp_path / "a", 24, rgb)
    b = _copy(EMOJI / "twemoji-faces", tmp_path / "b", 24, rgb)
    extractor = get_extractor(weights)
    alpha = "white" if rgb else "drop"  # 'drop' reproduces pytorch-fid's convert('RGB')
    sa, sb = (FeatureStats(extractor(load_folder(d, None, alpha).images)) for d in (a, b))
    ours, theirs = fid(sa, sb), _pytorch_fid([a, b], weights)
    assert ours == pytest.approx(theirs, rel=1e-3)
    assert ours > 10
    assert abs(fid(sa, sa)) < 1e-3  # a folder against itself


@pytest.mark.parametrize("n_real, n_fake", [(300, 40)])
def test_fid_low_rank_path_equals_pytorch_fid_formula(n_real, n_fake):
    rng = np.random.default_rng(1)
    real = FeatureStats(rng.normal(size=(n_real, 2048)).astype(np.float32))
    fake = FeatureStats((rng.normal(size=(n_fake, 2048)) * 1.2 + 0.05).astype(np.float32))
    expected = fid_score.calculate_frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
    assert fid(real, fake) == pytest.approx(expected, rel=1e-6)


def test_kid_unbiased_and_ordered():
    rng = np.random.default_rng(0)
    a = FeatureStats(rng.normal(size=(120, 64)).astype(np.float32))
    b = FeatureStats(rng.normal(size=(90, 64)).astype(np.float32))
    c = FeatureStats(rng.normal(0.3, 1.0, size=(90, 64)).astype(np.float32))
    same, different = kid(a, b), kid(a, c)
    assert abs(same) < 0.2 * different
    assert different > 0
    with pytest.raises(GansweepError, match="at least 2 images"):
        kid(a, FeatureStats(a.features[:1]))


class _Counting:
    def __init__(self, identity: str):
        self.identity, self.calls = identity, 0

    def __call__(self, images):
        self.calls += 1
        return np.ones((len(images), 4), np.float32) * images.float().mean().item()


def test_real_stats_cached_atomically(tmp_path):
    images = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    ex = _Counting("x")
    first = real_stats(images, "digest1", ex, tmp_path)
    second = real_stats(images, "digest1", ex, tmp_path)
    assert ex.calls == 1 and np.array_equal(first.features, second.features)
    real_stats(images, "digest1", _Counting("other-extractor"), tmp_path)
    real_stats(images, "digest2", ex, tmp_path)
    assert ex.calls == 2
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and all(f.endswith(".npz") for f in files)


def test_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(GansweepError, match="no such file"):
        resolve_weights(tmp_path / "absent.pth")
    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", str(tmp_path / "env.pth"))
    with pytest.raises(GansweepError, match="env.pth: no such file"):
        resolve_weights(None)
    wrong = tmp_path / "wrong.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(GansweepError, match="do not fit pytorch-fid's FID Inception"):
        InceptionFeatures(str(wrong), torch.device("cpu"))
    junk = tmp_path / "junk.pth"
    junk.write_text("junk")
    with pytest.raises(GansweepError, match="not a PyTorch state dict"):
        InceptionFeatures(str(junk), torch.device("cpu"))
