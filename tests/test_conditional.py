"""Conditional transfer (Wang et al. section 5): a class-conditional DCGAN loaded from an
unconditional source, its new parameters, and a target given as class sub-folders."""
import math

import pytest
import torch

from gansweep.core.data import class_names
from gansweep.core.errors import GansweepError
from gansweep.core.models import ArchConfig, build_models, load_source_state
from gansweep.core.synthetic import make_domain
from gansweep.core.train import train
from gansweep.core.treatments import apply_plan, trainable_parameters
from gansweep.core.trial import transfer_config

ARCH = ArchConfig("dcgan", 32, 8, 16, "batch")
G_NORMS = ["b4", "b8", "b16", "b32"]  # the units of G with batch norm (not rgb)
NEW = {"projection": ["units.fc.embed.weight"],
       "ac": ["units.fc.classifier.weight", "units.fc.classifier_bias.weight"]}


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    """A net whose every parameter and statistic differs from a fresh one's."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=gen) * 0.1).abs_()
    return net


@pytest.mark.parametrize("head", ["projection", "ac"])
def test_conditional_nets_load_an_unconditional_source(head):
    """Exactly the per-class parameters are new; every other weight and statistic is the
    source's; each class's BN scale/shift is a copy of the source's, so at load G(z, y) is
    the source's G(z) for every class, and a projection D(x, y) is the source's D(x)."""
    torch.manual_seed(0)
    g_src, d_src = (_randomised(n) for n in build_models(ARCH))
    g, d = build_models(ArchConfig("dcgan", 32, 8, 16, "batch", num_classes=3, cond_head=head))
    new_g = load_source_state(g, g_src.state_dict())
    new_d = load_source_state(d, d_src.state_dict())
    assert new_g == sorted(f"units.{u}.norm.{t}.weight" for u in G_NORMS
                           for t in ("beta", "gamma"))
    assert new_d == NEW[head]
    for net, src, new in ((g, g_src, new_g), (d, d_src, new_d)):
        for name, value in net.state_dict().items():
            if name not in new:
                assert torch.equal(value, src.state_dict()[name]), name
    for u in G_NORMS:
        norm, src_norm = g.units[u].norm, g_src.units[u].norm
        assert torch.equal(norm.gamma.weight, src_norm.weight.expand(3, -1))
        assert torch.equal(norm.beta.weight, src_norm.bias.expand(3, -1))
    z, x = torch.randn(6, 16), torch.rand(6, 3, 32, 32) * 2 - 1
    for mode in (True, False):  # batch statistics, then running statistics
        g.train(mode), g_src.train(mode), d.train(mode), d_src.train(mode)
        for c in range(3):
            y = torch.full((6,), c)
            assert torch.allclose(g(z, y), g_src(z), atol=1e-6)
            if head == "projection":
                assert torch.allclose(d(x, y), d_src(x), atol=1e-6)
    if head == "ac":
        assert d.class_logits(x).shape == (6, 3)


def test_class_parameters_train_whatever_the_treatment():
    """Freezing every unit leaves exactly the per-class parameters trainable."""
    g, d = build_models(ArchConfig("dcgan", 32, 8, 16, "batch", num_classes=2))
    apply_plan(g, ["freeze"] * 5)
    apply_plan(d, ["adafm"] * 5)
    names = {n for n, p in g.named_parameters() if p.requires_grad}
    assert names == {f"units.{u}.norm.{t}.weight" for u in G_NORMS for t in ("gamma", "beta")}
    d_names = {n for n, p in d.named_parameters() if p.requires_grad}
    assert "units.fc.embed.weight" in d_names
    assert all("gamma" in n or "beta" in n or "embed" in n for n in d_names), d_names
    assert len(trainable_parameters(g)) == 8


def test_class_folders(tmp_path):
    make_domain(tmp_path / "t" / "faces", "faces", 4, 32, seed=1)
    make_domain(tmp_path / "t" / "blobs", "blobs", 4, 32, seed=2)
    assert class_names(tmp_path / "t") == ["blobs", "faces"]
    with pytest.raises(GansweepError, match="at least 2 class sub-folders"):
        class_names(make_domain(tmp_path / "one" / "faces", "faces", 4, 32, seed=1).parent)
    with pytest.raises(GansweepError, match="lie directly in it"):
        class_names(make_domain(tmp_path / "flat", "faces", 4, 32, seed=1))


def test_conditional_transfer_trains_and_reports_per_class(sources, faces, blobs, tmp_path,
                                                           weights):
    """A conditional transfer from the unconditional source runs the one training loop and
    reports overall FID, FID per class, IW and the classifier score."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "faces").symlink_to(faces)  # class folders may be links
    (target / "blobs").symlink_to(blobs)
    cfg = transfer_config(str(sources["dcgan"]), str(target), str(tmp_path / "run"),
                          baseline="fine-tune", conditional="ac", iters=2, eval_every=2,
                          batch_size=8, fid_samples=16, metrics=["fid", "iw", "classifier"],
                          iw_steps=20, classifier_steps=20, inception_weights=weights,
                          cache_dir=str(tmp_path / "cache"))
    assert cfg.arch.num_classes == 2 and cfg.classifier_negatives == str(blobs)
    record = train(cfg).history[-1]
    assert sorted(record["class_fid"]) == ["blobs", "faces"]
    assert all(v > 0 for v in record["class_fid"].values()) and record["fid"] > 0
    assert math.isfinite(record["iw"]) and 0 <= record["classifier"] <= 1
    with pytest.raises(GansweepError, match="not one of"):
        transfer_config(str(sources["dcgan"]), str(target), "x", baseline="fine-tune",
                        conditional="concat")
    with pytest.raises(GansweepError, match="lie directly in it"):
        transfer_config(str(sources["dcgan"]), str(faces), "x", baseline="fine-tune",
                        conditional="ac")
