"""LPIPS and CDC's Intra-LPIPS (core.lpips): ours equals the lpips package's LPIPS on the same
inputs with its shipped (calibrated) linear weights, given the same AlexNet; ImageNet's AlexNet
cannot be downloaded here, so the backbone is a random one in torchvision's layout, and the
other tests use random weights (arithmetic and plumbing)."""
import itertools
import sys
import urllib.error

import pytest
import torch

from gansweep.core.errors import GansweepError
from gansweep.core.lpips import (
    LPIPS,
    _embed,
    alexnet_weights,
    intra_lpips,
    load_lpips,
    package_linear_weights,
)
from gansweep.core.train import train
from gansweep.core.trial import transfer_config


@pytest.fixture
def lpips_file(tmp_path):
    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lins:  # published LPIPS weights are non-negative
        lin.weight.data.abs_()
    path = tmp_path / "lpips.pt"
    torch.save({k: v for k, v in net.state_dict().items() if k not in ("shift", "scale")}, path)
    return str(path)


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_lpips_distance_basics(lpips_file):
    net = load_lpips(lpips_file)
    x, y = _embed(net, images(3, 1)), _embed(net, images(3, 2))
    assert torch.equal(net.distance(x, x), torch.zeros(3))
    d = net.distance(x, y)
    assert (d > 0).all() and torch.allclose(d, net.distance(y, x))


def test_intra_lpips_clusters_and_averages(lpips_file):
    """Each generated image joins its nearest training image; the score is the mean, over
    clusters of two or more, of the mean pairwise distance: computed here pair by pair."""
    net = load_lpips(lpips_file)
    train_set = images(3, 3)
    torch.manual_seed(1)
    noisy = lambda j, s: (train_set[j].int() + torch.randint(-s, s + 1, (3, 32, 32))  # noqa: E731
                          ).clamp(0, 255).to(torch.uint8)
    gen = torch.stack([noisy(0, 8), noisy(0, 8), noisy(0, 8), noisy(1, 8), noisy(1, 8),
                       noisy(2, 8)])  # clusters {0, 1, 2}, {3, 4}, {5}: the last too small
    emb, ref = _embed(net, gen), _embed(net, train_set)
    nearest = [int(net.distance([e[i:i + 1] for e in emb], ref).argmin()) for i in range(6)]
    assert nearest == [0, 0, 0, 1, 1, 2]

    def d(a, b):
        return float(net.distance([e[a:a + 1] for e in emb], [e[b:b + 1] for e in emb]))
    by_hand = (sum(d(a, b) for a, b in itertools.combinations([0, 1, 2], 2)) / 3 + d(3, 4)) / 2
    assert intra_lpips(net, gen, train_set) == pytest.approx(by_hand, rel=1e-5)
    copies = train_set.repeat(4, 1, 1, 1)  # a generator that copies its training images
    assert intra_lpips(net, copies, train_set) == 0.0
    more = torch.stack([noisy(i % 3, 60) for i in range(12)])
    assert intra_lpips(net, more, train_set) > intra_lpips(net, gen, train_set)


def test_weights_are_required_and_checked(tmp_path, monkeypatch, lpips_file, sources, faces):
    """Without a file and without the lpips package, one line naming both ways."""
    monkeypatch.delenv("GANSWEEP_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setitem(sys.modules, "lpips", None)  # not installed
    with pytest.raises(GansweepError, match=r"metric 'intra_lpips' needs LPIPS weights: .* "
                                            r"pip install 'gansweep\[lpips\]'; or pass "
                                            r"--lpips-weights"):
        transfer_config(str(sources["dcgan"]), str(faces), "out", baseline="fine-tune",
                        metrics=["fid", "intra_lpips"])
    state = torch.load(lpips_file)
    del state["lins.4.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(GansweepError, match="no 'lins.4.weight'"):
        load_lpips(str(tmp_path / "partial.pt"))


@pytest.fixture
def torch_hub(tmp_path, monkeypatch):
    """An empty torch hub cache; ``alexnet()`` puts a random AlexNet state dict in
    torchvision's layout (features and classifier) where torchvision caches its ImageNet
    weights, and returns that network."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANSWEEP_LPIPS_WEIGHTS", raising=False)

    def alexnet():
        torch.manual_seed(3)
        net = torchvision.models.alexnet()
        path = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
        path.parent.mkdir(parents=True)
        torch.save(net.state_dict(), path)
        return net
    return alexnet


def test_lpips_equals_the_lpips_package(tmp_path, torch_hub):
    """Ours (torchvision's AlexNet file as --lpips-weights: the linear weights come from the
    package) against lpips.LPIPS(net='alex', pretrained=True) with the same backbone, on the
    same images: equal to float rounding."""
    import lpips

    torch.manual_seed(0)
    theirs = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    alexnet = {f"features.{k.split('.', 2)[2]}": v for k, v in theirs.state_dict().items()
               if k.startswith("net.slice")}  # net.slice2.3.weight -> features.3.weight
    torch.save(alexnet, tmp_path / "alexnet.pth")
    ours = load_lpips(str(tmp_path / "alexnet.pth"))
    for i, w in enumerate(package_linear_weights().values()):
        assert torch.equal(ours.lins[i].weight, w) and torch.equal(
            getattr(theirs, f"lin{i}").model[1].weight, w)  # the calibrated ones, both
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(6, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        expected = theirs(x, y).flatten()
        got = ours.distance(ours.embed(x), ours.embed(y))
    assert (expected > 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_a_transfer_reports_intra_lpips_from_the_package_weights(torch_hub, sources, faces,
                                                                 weights, tmp_path):
    """No file anywhere: the package's linear weights on the torch hub cache's AlexNet."""
    alexnet = torch_hub()
    net = load_lpips(None)
    assert torch.equal(net.features[3].weight, alexnet.features[3].weight)
    assert torch.equal(net.lins[0].weight, package_linear_weights()["lins.0.weight"])
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / "run"),
                          baseline="fine-tune", iters=2, batch_size=4, target_size=5,
                          fid_samples=20, metrics=["fid", "intra_lpips"],
                          inception_weights=weights)
    assert cfg.lpips_weights is None
    assert train(cfg).history[-1]["intra_lpips"] > 0


def test_alexnet_that_cannot_be_downloaded_is_one_line(torch_hub, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(GansweepError, match=r"LPIPS: cannot download torchvision's AlexNet "
                                            r"weights to .*alexnet-owt-7be5be79.pth .*give its "
                                            r"path as --lpips-weights"):
        alexnet_weights()
