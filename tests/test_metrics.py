"""FID equals pytorch-fid on the same files; KID and IS equal torch-fidelity's; KID is
unbiased; real statistics are cached."""
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfid_inception

from gansweep.core.data import load_folder
from gansweep.core.errors import GansweepError
from gansweep.core.features import (
    FeatureStats,
    InceptionFeatures,
    get_extractor,
    inception_score,
    real_stats,
    resolve_weights,
)
from gansweep.core.lpips import resolve_lpips_weights
from gansweep.core.metrics import fid, fid_sd, kid, resampled_fids
from tests.helpers import assert_one_clear_line, cli_in_process

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


def _feature_sets(n_a: int, n_b: int, dim: int = 2048) -> tuple[FeatureStats, FeatureStats]:
    rng = np.random.default_rng(1)
    return (FeatureStats(rng.normal(size=(n_a, dim)).astype(np.float32)),
            FeatureStats((rng.normal(size=(n_b, dim)) * 1.2 + 0.05).astype(np.float32)))


def test_fid_low_rank_path_equals_pytorch_fid_formula():
    # 256 dimensions: the same low-rank case (40 samples) without pytorch-fid's sqrtm of a
    # 2048 x 2048 matrix (15 s); the path depends on the rank, not on the dimension.
    many, few = _feature_sets(300, 40, dim=256)
    expected = fid_score.calculate_frechet_distance(many.mu, many.sigma, few.mu, few.sigma)
    # FID is symmetric; the low-rank side is the generated set in one call, the reference
    # set in the other.
    assert fid(many, few) == pytest.approx(expected, rel=1e-6)
    assert fid(few, many) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n_real, n_fake", [(300, 40), (40, 300), (60, 60)])
def test_resampled_fids_equal_fid_of_the_resample(n_real, n_fake):
    real, fake = _feature_sets(n_real, n_fake)
    rng = np.random.default_rng(2)
    draws = [rng.integers(0, n_fake, n_fake) for _ in range(3)]
    fast = resampled_fids(real, fake, draws)
    for value, idx in zip(fast, draws):
        assert value == pytest.approx(fid(real, FeatureStats(fake.features[idx])), rel=1e-6)
    sd = fid_sd(real, fake, draws=16, seed=0)
    assert sd > 0 and sd == fid_sd(real, fake, draws=16, seed=0)  # deterministic per seed
    assert fid_sd(real, FeatureStats(fake.features[:3])) is None


def test_fid_sd_matches_the_spread_over_fresh_samples():
    """fid_sd estimates how much FID moves between independent draws of 64 generated
    images (Gaussian features of rank 40): the half-sample sd within 50 % of the sd over 40
    fresh draws, where the bootstrap (with replacement) overstates it more than twice."""
    rng = np.random.default_rng(3)
    cov = rng.normal(size=(2048, 40)) / 8

    def draw(n, shift=0.1):
        return FeatureStats((rng.normal(size=(n, 40)) @ cov.T + shift).astype(np.float32))
    real = draw(200, 0.0)
    fresh = np.std([fid(real, draw(64)) for _ in range(40)], ddof=1)
    samples = [draw(64) for _ in range(5)]
    estimate = np.median([fid_sd(real, f, seed=k) for k, f in enumerate(samples)])
    assert abs(estimate / fresh - 1) < 0.5, (estimate, fresh)
    boot = np.median([np.std(resampled_fids(real, f, [rng.integers(0, 64, 64)
                                                       for _ in range(32)]), ddof=1)
                      for f in samples])
    assert boot > 2 * fresh


def test_kid_equals_torch_fidelity():
    """With one subset holding every image (so the random subsets cannot differ), our KID
    equals torch-fidelity's kid_features_to_metric on the same features (its polynomial
    kernel of degree 3, gamma 1/d, coef0 1, unbiased MMD^2)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    rng = np.random.default_rng(4)
    a = rng.normal(size=(60, 2048)).astype(np.float32)
    b = (rng.normal(size=(60, 2048)) * 1.2 + 0.2).astype(np.float32)
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=3,
                                    kid_subset_size=60, verbose=False)[KEY_METRIC_KID_MEAN]
    ours = kid(FeatureStats(a), FeatureStats(b), subsets=3, subset_size=60)
    assert ours > 0.05 and ours == pytest.approx(theirs, rel=1e-5)  # theirs: float32 kernel


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


def test_real_stats_of_an_earlier_sweep_come_from_the_machine_cache(tmp_path):
    """A sweep's statistics (its own cache) are computed once per machine: a second sweep
    of the same target copies them from the machine's cache; a trial, which finds them in
    its sweep's cache, writes nothing to the machine's."""
    images = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    ex, machine = _Counting("x"), tmp_path / "machine"
    first = real_stats(images, "d", ex, tmp_path / "sweep1", machine)
    second = real_stats(images, "d", ex, tmp_path / "sweep2", machine)
    assert ex.calls == 1 and np.array_equal(first.features, second.features)
    assert [len(list((tmp_path / d).iterdir())) for d in ("sweep1", "sweep2", "machine")] \
        == [1, 1, 1]
    real_stats(images, "d", ex, tmp_path / "sweep1", tmp_path / "worker-node")
    assert ex.calls == 1 and not (tmp_path / "worker-node").exists()


def test_an_interrupted_stats_write_leaves_no_cache(tmp_path, monkeypatch):
    """The disk fills half-way through the statistics file: the write fails, no cache file
    (whole or partial) is left, and the next run computes them again and caches them."""
    from gansweep.core import features

    images = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    real_savez = np.savez

    def half_then_full_disk(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(f.tell() // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(features.np, "savez", half_then_full_disk)
    ex = _Counting("x")
    with pytest.raises(OSError, match="No space left"):
        real_stats(images, "d", ex, tmp_path)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
    monkeypatch.setattr(features.np, "savez", real_savez)
    first = real_stats(images, "d", ex, tmp_path)
    again = real_stats(images, "d", ex, tmp_path)
    assert ex.calls == 2 and np.array_equal(first.features, again.features)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]


def test_weights_paths_are_made_absolute(tmp_path, monkeypatch):
    """A sweep's trials run in their own working directories: a relative path in the
    option or the environment variable must reach them as the file the driver meant."""
    (tmp_path / "w.pth").write_bytes(b"")
    torch.save({}, tmp_path / "l.pth")  # LPIPS weights are checked to be a torch file
    monkeypatch.chdir(tmp_path)
    assert resolve_weights("w.pth") == str(tmp_path.resolve() / "w.pth")
    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", "w.pth")
    assert resolve_weights(None) == str(tmp_path.resolve() / "w.pth")
    monkeypatch.setenv("GANSWEEP_LPIPS_WEIGHTS", "l.pth")
    assert resolve_lpips_weights(None) == str(tmp_path.resolve() / "l.pth")


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
    with pytest.raises(GansweepError, match="junk.pth: not a readable Inception weights"):
        InceptionFeatures(str(junk), torch.device("cpu"))


def _images(root: Path, style: str, seed: int) -> torch.Tensor:
    from gansweep.core.synthetic import make_domain
    return load_folder(make_domain(root / f"{style}{seed}", style, 40, 32, seed=seed),
                       None).images


def test_iw_sign_convention(tmp_path):
    """IW = E_real[D^] - E_gen[D^] with Wang et al.'s sign: about 0 for two samples of the
    same distribution, negative and falling as the generated set moves away (faces ->
    blobs -> noise), so higher is better."""
    from gansweep.core.critics import independent_wasserstein
    real = _images(tmp_path, "faces", 1)
    same, other = _images(tmp_path, "faces", 5), _images(tmp_path, "blobs", 2)
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    iw = {name: independent_wasserstein(real, x, steps=100, seed=0)
          for name, x in (("same", same), ("other", other), ("noise", noise))}
    assert abs(iw["same"]) < 1.0, iw
    assert iw["same"] > iw["other"] + 5 > iw["noise"] + 5, iw
    # Deterministic for a seed, and the caller's random stream is left alone.
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    assert independent_wasserstein(real, other, steps=100, seed=0) == iw["other"]
    assert torch.rand(1) == expected


def test_classifier_score_and_cache(tmp_path):
    """Price's classifier score: a classifier of the target's classes vs other images
    accepts held-out target-like images and rejects the others; it is cached under a hash
    of what made it, and per-class acceptance uses the conditioning labels."""
    from gansweep.core.critics import train_classifier
    from gansweep.core.synthetic import make_domain
    target = tmp_path / "target"
    make_domain(target / "faces", "faces", 30, 32, seed=1)
    make_domain(target / "blobs", "blobs", 30, 32, seed=2)
    negatives = load_folder(make_domain(tmp_path / "noise", "blobs", 30, 16, seed=3), 32)
    negatives.images = torch.randint(0, 256, negatives.images.shape, dtype=torch.uint8)
    cache = tmp_path / "cache"
    clf = train_classifier(load_folder(target, None, labelled=True), negatives, steps=150,
                           cache_dir=cache)
    assert clf.classes == ["blobs", "faces"] and clf.accuracy > 0.9
    faces, blobs = _images(tmp_path, "faces", 7), _images(tmp_path, "blobs", 8)
    assert clf.score(faces, None) > 0.9 and clf.score(negatives.images, None) < 0.1
    assert clf.score(faces, torch.ones(len(faces), dtype=torch.long)) > 0.9  # "faces"
    assert clf.score(faces, torch.zeros(len(faces), dtype=torch.long)) < 0.1  # not "blobs"
    assert clf.score(blobs, torch.zeros(len(blobs), dtype=torch.long)) > 0.8
    (cached,) = cache.glob("classifier-*.pt")
    again = train_classifier(load_folder(target, None, labelled=True), negatives, steps=150,
                             cache_dir=cache)
    assert torch.equal(again.predict(faces), clf.predict(faces))
    assert again.accuracy == clf.accuracy and list(cache.iterdir()) == [cached]


@pytest.fixture(scope="module")
def classifier_weights(weights, tmp_path_factory) -> str:
    """The shared FID weights with a random classifier put into a copy: that file's ``fc``
    is zero-filled (FID-only weights); pytorch-fid's download has the trained one."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(state["fc.weight"].shape, generator=gen) * 0.05
    state["fc.bias"] = torch.randn(state["fc.bias"].shape, generator=gen)
    path = tmp_path_factory.mktemp("is") / "inception-random-fc.pth"
    torch.save(state, path)
    return str(path)


def test_inception_score_equals_torch_fidelity(classifier_weights):
    """On the same images and weights, our IS equals torch-fidelity's ISC on the same logits
    (fc without its bias, as its ``logits_unbiased``; 10 consecutive splits). Its own
    Inception preprocesses differently (TF1-style resize, (x - 128) / 128), so only the
    score, not its feature extractor, is compared."""
    from torch_fidelity.metric_isc import (
        KEY_METRIC_ISC_MEAN,
        KEY_METRIC_ISC_STD,
        isc_features_to_metric,
    )

    images = load_folder(EMOJI / "twemoji-faces", None).images[:30]
    pool3, logits = InceptionFeatures(classifier_weights, torch.device("cpu")).run(images)
    fc = torch.load(classifier_weights, weights_only=True)["fc.weight"].double().numpy()
    assert np.allclose(logits, pool3.astype(np.float64) @ fc.T, rtol=1e-4, atol=1e-4)
    theirs = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=False)
    mean, sd = inception_score(logits)
    assert mean > 1.05 and sd > 0
    assert mean == pytest.approx(theirs[KEY_METRIC_ISC_MEAN], rel=1e-4)
    assert sd == pytest.approx(theirs[KEY_METRIC_ISC_STD], rel=1e-4)


def test_inception_score_refuses_fid_only_weights(weights, faces, tmp_path):
    assert_one_clear_line(cli_in_process("fid", faces, faces, "--metrics", "fid,is",
                                         "--inception-weights", weights),
                          "fid", "fc is all zeros (FID-only weights)")
