"""LPIPS and CDC's Intra-LPIPS (core.lpips), with random weights: these tests check the
arithmetic (distances, clustering, averaging) and the plumbing, not the perceptual
calibration, which needs the published weights (not downloadable here)."""
import itertools

import pytest
import torch

from gansweep.core.errors import GansweepError
from gansweep.core.lpips import LPIPS, _embed, intra_lpips, load_lpips
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
    monkeypatch.delenv("GANSWEEP_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(GansweepError, match="metric 'intra_lpips' needs LPIPS weights"):
        transfer_config(str(sources["dcgan"]), str(faces), "out", baseline="fine-tune",
                        metrics=["fid", "intra_lpips"])
    state = torch.load(lpips_file)
    del state["lins.4.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(GansweepError, match="no 'lins.4.weight'"):
        load_lpips(str(tmp_path / "partial.pt"))


def test_a_transfer_reports_intra_lpips(sources, faces, weights, tmp_path, lpips_file):
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / "run"),
                          baseline="fine-tune", iters=2, batch_size=4, target_size=5,
                          fid_samples=20, metrics=["fid", "intra_lpips"],
                          inception_weights=weights, lpips_weights=lpips_file)
    record = train(cfg).history[-1]
    assert record["intra_lpips"] > 0
