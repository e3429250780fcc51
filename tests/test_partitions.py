"""Partition strings, enumeration and baseline presets, exactly as the README defines them."""
import pytest

from gansweep.core.errors import GansweepError
from gansweep.core.models import ArchConfig, unit_counts
from gansweep.core.treatments import (
    baseline_pair,
    count_trainable_for_plans,
    enumerate_partitions,
    family_plan,
    parse_partition,
)


@pytest.mark.parametrize("units", range(1, 8))
def test_enumeration_count(units):
    for net in "DG":
        parts = enumerate_partitions(net, units)
        assert len(parts) == (units + 1) * (units + 2) // 2
        assert len(set(parts)) == len(parts)
        assert all(p.units == units for p in parts)


def test_21_for_five_units():
    assert len(enumerate_partitions("D", 5)) == 21
    assert len(enumerate_partitions("G", 5)) == 21


def test_design_examples():
    assert parse_partition("D(2,1,2)", 5).plan() == (
        "freeze", "freeze", "adafm", "finetune", "finetune")
    assert parse_partition("G(1,2,2)", 5).plan() == (
        "finetune", "finetune", "adafm", "adafm", "freeze")
    assert parse_partition(" D( 1 , 2 ,2 ) ", 5, "D").plan("filter-shift") == (
        "freeze", "filter-shift", "filter-shift", "finetune", "finetune")
    assert str(parse_partition("G(3,0,2)", 5)) == "G(3,0,2)"


@pytest.mark.parametrize("text, fragment", [
    ("D(1,2,3)", "sums to 6"),
    ("D(-1,3,3)", "negative"),
    ("D(1,2)", "malformed"),
    ("X(1,2,2)", "malformed"),
    ("D(a,b,c)", "malformed"),
    ("", "malformed"),
])
def test_invalid_partitions_name_string_and_l(text, fragment):
    with pytest.raises(GansweepError) as e:
        parse_partition(text, 5)
    assert fragment in str(e.value)
    assert repr(text) in str(e.value) and "L = 5" in str(e.value)


def test_wrong_network():
    with pytest.raises(GansweepError, match="expected a D partition"):
        parse_partition("G(1,2,2)", 5, "D")


def test_baselines_at_five_units():
    expect = {"fine-tune": ("D(0,0,5)", "G(0,0,5)"), "freeze": ("D(3,0,2)", "G(3,0,2)"),
              "scale-shift": ("D(0,5,0)", "G(0,5,0)"), "freeze-d": ("D(3,0,2)", "G(0,0,5)")}
    for name, (d, g) in expect.items():
        pair = baseline_pair(name, 5, 5)
        assert (str(pair.d_partition), str(pair.g_partition)) == (d, g)
        assert pair.d_plan == parse_partition(d, 5).plan()
        assert pair.g_plan == parse_partition(g, 5).plan()
    scratch = baseline_pair("scratch", 5, 5)
    assert scratch.g_plan == ("reinit",) * 5 and scratch.d_plan == ("reinit",) * 5
    assert str(baseline_pair("freeze-d", 5, 5, freeze_d_depth=1).d_partition) == "D(1,0,4)"


def test_baselines_scale_with_units():
    assert str(baseline_pair("freeze", 4, 6).d_partition) == "D(2,0,2)"
    assert str(baseline_pair("freeze", 4, 6).g_partition) == "G(4,0,2)"
    with pytest.raises(GansweepError, match="valid: fine-tune, freeze, freeze-d"):
        baseline_pair("fine_tune", 5, 5)


def test_trainable_counts():
    arch = ArchConfig("dcgan", 64, 8, 16)
    lg, ld = unit_counts(arch)
    full = count_trainable_for_plans(arch, ["finetune"] * lg, ["finetune"] * ld)
    frozen = count_trainable_for_plans(arch, ["freeze"] * lg, ["freeze"] * ld)
    pair = baseline_pair("freeze", ld, lg)
    part = count_trainable_for_plans(arch, pair.g_plan, pair.d_plan)
    assert frozen == (0, 0)
    assert 0 < part[0] < full[0] and 0 < part[1] < full[1]


@pytest.mark.parametrize("units", [1, 5, 6])
def test_plan_families_forward_and_backward(units):
    for n in range(1, units + 1):
        for mode in ("freeze", "finetune"):
            fwd = family_plan("forward", mode, n, units)
            bwd = family_plan("backward", mode, n, units)
            assert fwd == (mode,) * n + ("reinit",) * (units - n)
            assert bwd == ("reinit",) * (units - n) + (mode,) * n
    assert family_plan("forward", "freeze", units, units) == ("freeze",) * units
    with pytest.raises(GansweepError, match="between 1 and L"):
        family_plan("forward", "freeze", units + 1, units)
    with pytest.raises(GansweepError, match="mode: 'adafm'"):
        family_plan("backward", "adafm", 1, units)


def test_partitions_are_shown_in_one_order():
    """The heatmap's rows and the effects' rows come from one ordering (i, then j)."""
    from gansweep.core.treatments import in_order

    assert in_order(["G(3,0,2)", "G(0,0,5)", "G(1,2,2)", "G(0,4,1)"]) == \
        ["G(0,0,5)", "G(0,4,1)", "G(1,2,2)", "G(3,0,2)"]
    assert in_order({"D(0,0,2)", "D(2,0,0)", "D(0,2,0)"}) == ["D(0,0,2)", "D(0,2,0)", "D(2,0,0)"]
