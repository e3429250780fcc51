"""Every registry's entries carry their facts, and each entry is tested by being registered:
each test is parametrised over its registry, with a guard that fails when an entry has no
expected facts here (a new metric must say which way is better before anything ranks by it).
Treatments and losses have their own parametrised tests (test_treatments, test_losses)."""
from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from gansweep.core.augment import AUGMENTS, parse_augment
from gansweep.core.errors import GansweepError
from gansweep.core.foreign import IMPORTERS, import_checkpoint
from gansweep.core.losses import LOSSES
from gansweep.core.metrics import METRICS
from gansweep.core.models import ARCHITECTURES, ArchConfig, unit_names
from gansweep.core.treatments import (
    BASELINES,
    TREATMENTS,
    baseline_pair,
    modulations,
    parse_partition,
    plans_label,
)
from gansweep.core.trial import Trial
from gansweep.sweep.spec.ranking import rank_settings
from gansweep.sweep.spec.trackers import TRACKERS, check_trackers

# metric -> (Ray Tune's mode, the result key of its sampling sd)
METRIC_FACTS = {"fid": ("min", "fid_sd"), "kid": ("min", None), "is": ("max", "is_sd"),
                "iw": ("max", None), "classifier": ("max", None), "intra_lpips": ("max", None)}


def test_every_metric_has_its_facts_here():
    assert set(METRICS.names()) == set(METRIC_FACTS)


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_direction_ranks_the_better_setting_first(name):
    m = METRICS.get(name)
    assert (m.mode, m.sd) == METRIC_FACTS[name]
    better, worse = (2.0, 1.0) if m.mode == "max" else (1.0, 2.0)
    assert m.loss(better) < m.loss(worse) < m.loss(m.worst)

    def record(label, value, seed):
        trial = Trial(label=label, source="s.pt", target="t", baseline=label, seed=seed)
        return {"config": trial.to_dict(), "iteration": 4, "status": "finished",
                "last": {"score": value}}
    records = [record("a", worse, 0), record("b", better, 0), record("c", m.worst, 0)]
    assert [k.split('"label": "')[1][0] for k, _, _ in rank_settings(records, name)] == \
        ["b", "a", "c"]


# baseline -> (D, G) at L = 5, as DESIGN.md fixes them; None: every unit re-initialised
BASELINE_PLANS = {"fine-tune": ("D(0,0,5)", "G(0,0,5)"), "freeze": ("D(3,0,2)", "G(3,0,2)"),
                  "scale-shift": ("D(0,5,0)", "G(0,5,0)"), "freeze-d": ("D(3,0,2)", "G(0,0,5)"),
                  "scratch": None}


def test_every_baseline_has_its_plans_here():
    assert set(BASELINES.names()) == set(BASELINE_PLANS)


@pytest.mark.parametrize("name", BASELINES.names())
def test_baseline_plans(name):
    pair = baseline_pair(name, 5, 5)
    if BASELINE_PLANS[name] is None:
        assert pair.g_plan == pair.d_plan == ("reinit",) * 5
        return
    d, g = (parse_partition(p, 5) for p in BASELINE_PLANS[name])
    assert (pair.d_plan, pair.g_plan) == (d.plan(), g.plan()) and pair.baseline == name
    # for other L the presets scale: 'freeze' and 'freeze-d' keep the last two units training
    wide = baseline_pair(name, 7, 6)
    assert len(wide.d_plan) == 7 and len(wide.g_plan) == 6
    if name in ("freeze", "freeze-d"):
        assert wide.d_plan.count("freeze") == 5


# preset -> whether it transforms real images, whether it acts in the critic
AUGMENT_FACTS = {"none": (False, False), "flip": (True, False), "mild": (True, False),
                 "diffaug": (False, True)}


def test_every_augmentation_has_its_facts_here():
    assert set(AUGMENTS.names()) == set(AUGMENT_FACTS)


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_augmentation_presets(name):
    images, fakes = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), torch.rand(8, 3,
                                                                                        16, 16)
    a = parse_augment(name)
    torch.manual_seed(0)
    real = a.real_batch(images)
    assert real.shape == images.shape and real.dtype == torch.uint8
    changes_images, in_critic = AUGMENT_FACTS[name]
    assert (not torch.equal(real, images)) == changes_images
    assert (not torch.equal(a.critic_input(fakes), fakes)) == in_critic


# tracker -> (its package, the extra that installs it; None: a declared dependency)
TRACKER_FACTS = {"tensorboard": ("tensorboardX", None), "mlflow": ("mlflow", "trackers"),
                 "wandb": ("wandb", "trackers")}


def test_every_tracker_has_its_facts_here():
    from gansweep.sweep.run.tracking import DRIVER_CALLBACKS

    assert set(TRACKERS.names()) == set(TRACKER_FACTS)
    # each is written by the trials or by a driver's callback
    assert {n for n in TRACKERS.names() if not TRACKERS.get(n).in_trial} == set(DRIVER_CALLBACKS)


@pytest.mark.parametrize("name", TRACKERS.names())
def test_tracker_package_and_its_missing_line(name, monkeypatch):
    tracker = TRACKERS.get(name)
    assert (tracker.package, tracker.extra) == TRACKER_FACTS[name]
    assert importlib.util.find_spec(tracker.package) is not None  # the dev extra has them all
    check_trackers([name])
    if tracker.extra is None:
        return
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda m, *a: None if m == tracker.package else real(m, *a))
    with pytest.raises(GansweepError, match=rf"pip install 'gansweep\[{tracker.extra}\]'"):
        check_trackers([name])


# treatment -> (plan letter, modulates, trains every parameter of its unit)
TREATMENT_FACTS = {"finetune": ("T", False, True), "reinit": ("R", False, True),
                   "freeze": ("F", False, False), "adafm": ("A", True, False),
                   "filter-shift": ("S", True, False)}


def test_every_treatment_has_its_facts_here():
    assert set(TREATMENTS.names()) == set(TREATMENT_FACTS)
    assert modulations() == tuple(n for n, (_, mod, _) in TREATMENT_FACTS.items() if mod)


@pytest.mark.parametrize("name", TREATMENTS.names())
def test_treatment_facts(name):
    t = TREATMENTS.get(name)
    assert (t.letter, t.modulates, t.trains_all) == TREATMENT_FACTS[name]
    assert plans_label(([name] * 2, [name])) == f"G[{t.letter * 2}]D[{t.letter}]"


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_architecture_facts(name):
    """Each architecture builds every resolution it registers, with its default D norm, and
    refuses what it does not build in one line naming the field."""
    arch = ARCHITECTURES.get(name)
    for resolution in arch.resolutions:
        g, d = unit_names(ArchConfig(name, resolution, 64, 8))
        assert g and d
    assert ArchConfig(name, arch.resolutions[0], 8, 8).d_norm == arch.d_norms[0]
    with pytest.raises(GansweepError, match="arch.resolution: 40 is not one of"):
        ArchConfig(name, 40)
    other = next(n for n in ("batch", "spectral") if n not in arch.d_norms)
    with pytest.raises(GansweepError, match=f"arch.d_norm: '{other}' is not one of"):
        ArchConfig(name, arch.resolutions[0], d_norm=other)
    if not arch.conditional:
        with pytest.raises(GansweepError, match="arch.num_classes"):
            ArchConfig(name, arch.resolutions[0], num_classes=2)


# option -> a value of the wrong kind, and what the one-line refusal says it must be
ARCH_OPTION_FACTS = {"d_width": (0, r"an integer in \[1, 8192\]"),
                     "mapping_layers": (33, r"an integer in \[1, 32\]"),
                     "channel_base": (1.5, r"an integer in \[1, 524288\]"),
                     "conv_clamp": (-1.0, "a positive number or null"),
                     "mbstd_group": (0, r"an integer in \[1, 8192\]"),
                     "mbstd_channels": ("2", r"an integer in \[1, 8192\]"),
                     "w_avg": (1, "true or false")}


def test_every_architecture_option_has_its_facts_here():
    assert {o for a in ARCHITECTURES for o in ARCHITECTURES.get(a).options} == \
        set(ARCH_OPTION_FACTS)


@pytest.mark.parametrize("option", sorted(ARCH_OPTION_FACTS))
def test_architecture_option_refusals(option):
    """A bad value names the field and the value; another architecture refuses the option."""
    bad, kind = ARCH_OPTION_FACTS[option]
    owners = [a for a in ARCHITECTURES if option in ARCHITECTURES.get(a).options]
    with pytest.raises(GansweepError, match=rf"^arch\.{option}: {re.escape(repr(bad))} must "
                                            rf"be {kind}$"):
        ArchConfig(owners[0], ARCHITECTURES.get(owners[0]).resolutions[0], **{option: bad})
    other = next(a for a in ARCHITECTURES if a not in owners)
    with pytest.raises(GansweepError, match=rf"^arch\.{option}: .* is for {re.escape(str(owners))} "
                                            rf"only, not '{other}'$"):
        ArchConfig(other, ARCHITECTURES.get(other).resolutions[0], **{option: bad})


# import format -> (its loss, G and D in one file, the generators a file holds, default first)
IMPORTER_FACTS = {"pytorch-examples-dcgan": ("bce", False, ()), "mimicry": ("hinge", False, ()),
                  "rosinality": ("stylegan2", True, ()),
                  "stylegan2-ada": ("stylegan2", True, ("G_ema", "G"))}


def test_every_import_format_has_its_facts_here():
    assert set(IMPORTERS.names()) == set(IMPORTER_FACTS)


@pytest.mark.parametrize("name", IMPORTERS.names())
def test_import_format_facts(name, tmp_path):
    """Each format's facts; its loss is registered; a generator it does not hold is refused
    in one line naming the option, before any file is read (tests/test_foreign.py imports
    each format's files)."""
    importer = IMPORTERS.get(name)
    assert (importer.loss, importer.one_file, importer.generators) == IMPORTER_FACTS[name]
    LOSSES.get(importer.loss)
    d_file = None if importer.one_file else tmp_path / "d.pt"
    with pytest.raises(GansweepError, match=r"^--generator: 'g_x' is not one of the generators"):
        import_checkpoint(name, tmp_path / "g.pt", d_file, tmp_path / "x.pt", generator="g_x")


# search type -> (chooses which trials run, needs a D x G grid without plans)
SEARCH_FACTS = {"grid": (False, False), "structured": (True, True)}


def test_every_search_type_has_its_facts_here():
    from gansweep.sweep.spec.schema import SEARCHES

    assert set(SEARCHES.names()) == set(SEARCH_FACTS)


@pytest.mark.parametrize("name", list(SEARCH_FACTS))
def test_search_type_facts(name):
    """A search that chooses is driven by the structured searcher, which refuses a grid
    of plans; one that does not is Tune's grid."""
    from gansweep.sweep.searchers.structured import StructuredSearch
    from gansweep.sweep.spec.schema import SEARCHES, Search

    kind = SEARCHES.get(name)
    assert (kind.chooses, kind.needs_pairs) == SEARCH_FACTS[name]
    plans = [Trial(label="p", source="s.pt", target="t", g_plan=["finetune"] * 5,
                   d_plan=["finetune"] * 5)]
    if kind.chooses:
        with pytest.raises(GansweepError, match="needs a grid of D x G partition pairs"):
            StructuredSearch(plans, Search(name), METRICS.get("fid").loss)
