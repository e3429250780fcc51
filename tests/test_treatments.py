"""Treatments: exactly the intended parameters learn, modulation starts as the identity,
frozen units stay bit-identical through real training steps."""
import copy
import functools
import re

import pytest
import torch
from torch import nn

from gansweep.core.checkpoint import load_checkpoint
from gansweep.core.errors import GansweepError
from gansweep.core.foreign_ada import load_ada, read_ada
from gansweep.core.models import ARCHITECTURES, ArchConfig, FilterShift, build_models
from gansweep.core.train import setup, train
from gansweep.core.treatments import TREATMENTS, AdaFM, apply_plan, modulations, param_groups
from gansweep.core.trial import transfer_config

from .conftest import SHARED, TINY

ARCHS = {"dcgan": ArchConfig("dcgan", 32, 4, 8), "dcgan64": ArchConfig("dcgan", 64, 4, 8),
         "resnet": ArchConfig("resnet", 32, 2, 8, "layer"), "sngan": ArchConfig("sngan", 32, 4, 8),
         "sngan48": ArchConfig("sngan", 48, 16, 8, d_width=16),
         "sngan64": ArchConfig("sngan", 64, 16, 8, d_width=16),
         "dcgan128": ArchConfig("dcgan", 128, 2, 8),
         "dcgan-price": ArchConfig("dcgan-price", 32, 4, 8),
         "stylegan2": ArchConfig("stylegan2", 32, 8, 16, mapping_layers=2),
         "stylegan2-ada": None}  # imported from NVIDIA's network pickle: see networks()


@functools.cache
def _ada() -> tuple[ArchConfig, dict, dict]:
    pickle = SHARED / "reference" / "stylegan2-ada-tiny32.pkl"
    g, d, arch, _ = load_ada(*read_ada(pickle, None, False, "G_ema"), "fixture")
    return arch, g.state_dict(), d.state_dict()


def arch_of(name: str) -> ArchConfig:
    return _ada()[0] if ARCHS[name] is None else ARCHS[name]


def networks(name: str) -> tuple[nn.Module, nn.Module]:
    """Fresh G and D of ``ARCHS[name]``; the imported one holds the pickle's weights."""
    if ARCHS[name] is not None:
        return build_models(ARCHS[name])
    arch, g_state, d_state = _ada()
    g, d = build_models(arch)
    g.load_state_dict(g_state)
    d.load_state_dict(d_state)
    return g, d


def test_every_architecture_is_tested():
    assert {arch_of(a).name for a in ARCHS} == set(ARCHITECTURES.names())


MODULATION_PARAMETERS = {"adafm": AdaFM, "filter-shift": FilterShift}  # where each keeps them


def test_every_modulation_says_where_its_parameters_are():
    assert set(MODULATION_PARAMETERS) == set(modulations())


def expected_trainable(unit: nn.Module, treatment: str) -> set[int]:
    if TREATMENTS.get(treatment).trains_all:
        return {id(p) for p in unit.parameters()}
    kind = MODULATION_PARAMETERS.get(treatment)
    if kind is None:
        return set()
    return {id(p) for m in unit.modules() if isinstance(m, kind) for p in m.parameters()}


def plans(treatment: str, g_units: int, d_units: int) -> tuple[list[str], list[str]]:
    # The treatment sits between a fine-tuned unit at the input end and frozen units, so
    # the fine-tuned unit only learns if gradients flow *through* the frozen/modulated ones.
    g = ["finetune", treatment] + ["freeze"] * (g_units - 2)
    d = ["finetune", "freeze", treatment] + ["freeze"] * (d_units - 3)
    return g, d


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("treatment", TREATMENTS.names())
def test_exactly_intended_parameters_get_gradients(arch, treatment):
    torch.manual_seed(0)
    g, d = networks(arch)
    g_plan, d_plan = plans(treatment, g.num_units, d.num_units)
    apply_plan(g, g_plan)
    apply_plan(d, d_plan)
    z = torch.randn(6, g.z_dim)
    real = torch.rand(6, 3, arch_of(arch).resolution, arch_of(arch).resolution) * 2 - 1
    # D's update: D on real and (detached) fake; G's update: through D.
    (d(g(z).detach()).mean() - d(real).mean()).backward()
    g_out = d(g(z)).mean()
    for p in d.parameters():
        p.grad = None
    g_out.backward()
    for net, plan in ((g, g_plan), (d, d_plan)):
        expected = set().union(*(expected_trainable(u, t)
                                 for (_, u), t in zip(net.transfer_units, plan)))
        got = {id(p) for p in net.parameters() if p.grad is not None}
        requires = {id(p) for p in net.parameters() if p.requires_grad}
        assert requires == expected
        assert got == expected
        assert all(p.grad.abs().sum() > 0 for p in net.parameters() if id(p) in expected)
        first = net.transfer_units[0][1]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("treatment", modulations())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_modulation_at_init_reproduces_pretrained(arch, treatment, mode):
    torch.manual_seed(0)
    g, d = networks(arch)
    g2, d2 = copy.deepcopy(g), copy.deepcopy(d)
    apply_plan(g2, [treatment] * g2.num_units)
    apply_plan(d2, [treatment] * d2.num_units)
    if treatment == "filter-shift":  # weights frozen: the reference is the frozen source (a
        g.requires_grad_(False)  # frozen spectral norm runs no power iteration, core.sngan)
        d.requires_grad_(False)
    for net in (g, d, g2, d2):
        net.train(mode == "train")
    z = torch.randn(5, g.z_dim)

    def seeded(net, x):  # the same random draws for both: dcgan-price's dropout masks,
        torch.manual_seed(1)  # stylegan2's noise inputs in train mode
        return net(x)
    x = seeded(g, z)
    assert torch.equal(seeded(g2, z), x)
    assert torch.equal(seeded(d2, x), seeded(d, x))


def test_adafm_shapes_and_transposed_layout():
    g, d = build_models(ARCHS["dcgan"])
    apply_plan(g, ["adafm"] * g.num_units)
    apply_plan(d, ["adafm"] * d.num_units)
    conv_t = g.transfer_units[0][1].layer  # ConvTranspose2d: weight is in x out x kh x kw
    w = conv_t.parametrizations.weight.original
    mod = conv_t.parametrizations.weight[0]
    assert mod.gamma.shape == (w.shape[1], w.shape[0], 1, 1)  # out x in x 1 x 1
    with torch.no_grad():
        mod.gamma[1, 2] = 3.0  # output channel 1, input channel 2
        mod.beta[1, 2] = 0.5
    eff = conv_t.weight
    assert torch.equal(eff[2, 1], 3.0 * w[2, 1] + 0.5)
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[2, 1] = False
    assert torch.equal(eff[mask], w[mask])
    conv = d.transfer_units[0][1].layer
    assert conv.parametrizations.weight[0].gamma.shape == conv.weight.shape[:2] + (1, 1)
    fc = d.transfer_units[-1][1].layer
    assert fc.parametrizations.weight[0].gamma.shape == (1, 1)  # one per output feature


@pytest.mark.parametrize("source, bn_stats", [("dcgan", "adapt"), ("dcgan", "fixed"),
                                              ("sngan", "adapt")])
def test_frozen_units_bit_identical_after_training(sources, faces, tmp_path, source, bn_stats):
    """Frozen units keep every parameter; their batch-norm statistics adapt unless fixed,
    their spectral-norm vectors stay (core.sngan). Modulated units change only gamma and
    beta (and, spectrally normalised, their u and v, which follow the modulated weight)."""
    src = sources[source]
    # The hinge loss has no gradient where D already separates the batch, as a 2-iteration
    # SNGAN source can: WGAN-GP's never vanishes.
    cfg = transfer_config(str(src), str(faces), str(tmp_path / "run"), d="D(1,2,2)",
                          g="G(1,1,3)", iters=3, batch_size=8, metrics=[], bn_stats=bn_stats,
                          loss="wgan-gp" if source == "sngan" else "wgan")
    state = setup(cfg)
    before_g = {k: v.clone() for k, v in state.G.state_dict().items()}
    before_d = {k: v.clone() for k, v in state.D.state_dict().items()}
    train(cfg, state=state)
    for net, before, plan in ((state.G, before_g, cfg.g_plan), (state.D, before_d, cfg.d_plan)):
        after = net.state_dict()
        for (name, _unit), t in zip(net.transfer_units, plan):
            keys = [k for k in after if k.startswith(f"units.{name}.")]
            vectors = [k for k in keys if k.endswith(("weight_u", "weight_v"))]
            params = [k for k in keys if not k.endswith(("running_mean", "running_var",
                                                        "num_batches_tracked"))
                      and k not in vectors]
            stats = [k for k in keys if k not in params and k not in vectors]
            changed = {k for k in params if not torch.equal(after[k], before[k])}
            moved = {k for k in vectors if not torch.equal(after[k], before[k])}
            # (a vector of one entry is +-1 whatever the iteration)
            assert moved == (set() if t == "freeze" else
                             {k for k in vectors if before[k].numel() > 1}), (name, t, moved)
            if t == "freeze":
                assert not changed, (name, changed)
                if bn_stats == "fixed":
                    assert all(torch.equal(after[k], before[k]) for k in stats)
                elif stats:
                    assert any(not torch.equal(after[k], before[k]) for k in stats)
            elif t == "adafm":
                assert all(".original" in k or "parametrizations" not in k for k in params
                           if k not in changed), [k for k in params if k not in changed]
                assert all(re.search(r"parametrizations\.weight(_orig)?\.0\.", k)
                           for k in changed) and changed
            else:
                assert changed
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["plans"] == {"g": cfg.g_plan, "d": cfg.d_plan}


def test_reinit_differs_from_source(sources, faces, tmp_path):
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), baseline="scratch",
                          metrics=[], batch_size=8, iters=1)
    src = load_checkpoint(sources["dcgan"])
    state = setup(cfg)
    weights = [k for k in src["G"] if k.endswith("layer.weight")]
    assert weights and all(not torch.equal(state.G.state_dict()[k], src["G"][k]) for k in weights)
    assert TINY["dcgan"] == state.cfg.arch


@pytest.mark.parametrize("arch", ARCHS)
def test_lr_mult_puts_each_treatment_in_its_group(arch, faces, tmp_path):
    """One optimiser group per treatment, holding exactly that treatment's trainable
    parameters, at lr times its multiplier (1 where not named); none without lr_mult."""
    lr_mult = {"finetune": 0.1, "adafm": 3.0}
    g, d = networks(arch)
    plan = ["reinit", "finetune", "adafm"] + ["freeze"] * (g.num_units - 3)
    apply_plan(g, plan)
    groups = param_groups(g, plan, 2e-4, lr_mult)
    assert [x["treatment"] for x in groups] == ["reinit", "finetune", "adafm"]
    for group in groups:
        t = group["treatment"]
        assert {id(p) for p in group["params"]} == set().union(
            *(expected_trainable(u, t) for (_, u), x in zip(g.transfer_units, plan) if x == t))
        assert group["lr"] == pytest.approx(2e-4 * lr_mult.get(t, 1.0))
    single = param_groups(g, plan, 2e-4, {})
    assert len(single) == 1 and len(single[0]["params"]) == sum(len(x["params"]) for x in groups)


def test_lr_mult_in_a_run_and_bad_names(sources, faces, tmp_path):
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), d="D(1,0,4)",
                          g="G(2,1,2)", iters=1, batch_size=8, metrics=[],
                          lr_mult={"finetune": 0.1, "adafm": 2.0})
    s = setup(cfg)
    lrs = {x["treatment"]: x["lr"] for x in s.opt_g.param_groups}
    assert lrs == pytest.approx({"finetune": 5e-6, "adafm": 1e-4})  # wgan's lr is 5e-5
    assert [x["treatment"] for x in s.opt_d.param_groups] == ["finetune"]
    with pytest.raises(GansweepError, match="lr_mult: unknown treatment 'frozen'; valid: "
                                            "adafm, filter-shift, finetune, freeze, reinit"):
        transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), baseline="freeze",
                        lr_mult={"frozen": 0.1})
