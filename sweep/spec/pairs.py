"""A spec's settings of the D x G grid: its partition pairs (``partitions:``) and its
per-unit plans (``plans:``, explicit or Denton et al.'s families), validated against the
units of the architecture. Errors name the field and the bad value."""
from __future__ import annotations

from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.core.treatments import (
    FAMILY_MODES,
    check_plan,
    enumerate_partitions,
    family_plan,
    parse_partition,
    plans_label,
)
from gansweep.sweep.spec.fields import as_list, check_keys, typed


def parse_pairs(data: Any, ld: int | None, lg: int | None) -> list[tuple[str, str]]:
    """``all``, ``{d: all|[...], g: all|[...]}`` (their product) or ``[[D, G], ...]``."""
    if data in ([], None):
        return []
    if ld is None or lg is None:
        raise GansweepError("partitions: the unit count needs the architecture (give 'arch')")

    def side(net: str, units: int, value: Any) -> list[str]:
        if value == "all":
            return [str(p) for p in enumerate_partitions(net, units)]
        return [str(parse_partition(v, units, net)) for v in as_list(f"partitions.{net.lower()}",
                                                                     value)]

    if data == "all":
        return [(d, g) for d in side("D", ld, "all") for g in side("G", lg, "all")]
    if isinstance(data, dict):
        check_keys("partitions", data, ["d", "g"])
        return [(d, g) for d in side("D", ld, data.get("d", "all"))
                for g in side("G", lg, data.get("g", "all"))]
    if isinstance(data, list):
        pairs = []
        for item in data:
            if not (isinstance(item, list) and len(item) == 2):
                raise GansweepError(f"partitions: {item!r} is not a [D(i,j,k), G(i,j,k)] pair")
            pairs.append((str(parse_partition(item[0], ld, "D")),
                          str(parse_partition(item[1], lg, "G"))))
        if len(set(pairs)) != len(pairs):
            raise GansweepError("partitions: duplicate pair")
        return pairs
    raise GansweepError(f"partitions: {data!r} is not 'all', a {{d, g}} mapping or a list of "
                        f"pairs")


PLAN_KEYS = ["label", "g", "d", "family", "mode", "n"]


def _unit_plan(where: str, item: dict, net: str, units: int, default: str | None) -> list[str]:
    value = item.get(net, default)
    if value is None:
        raise GansweepError(f"{where}: missing key {net!r}")
    value = [value] * units if isinstance(value, str) else value
    return list(check_plan(value, units, f"{where}.{net}"))


def parse_plans(data: Any, ld: int | None, lg: int | None) -> list[dict[str, Any]]:
    """``plans:`` entries, each explicit (``{g: [...], d: [...], label?}``, one treatment
    per unit, or one name for every unit) or a family (``{family: forward|backward,
    mode: freeze|finetune or a list, n: all or a list, d: ...}``, Denton et al.)."""
    if data in ([], None):
        return []
    if ld is None or lg is None:
        raise GansweepError("plans: the unit count needs the architecture (give 'arch')")
    out: list[dict[str, Any]] = []
    for k, item in enumerate(as_list("plans", data)):
        where = f"plans[{k}]"
        typed(where, item, (dict,), "a mapping")
        check_keys(where, item, PLAN_KEYS)
        d_plan = _unit_plan(where, item, "d", ld, "reinit" if "family" in item else None)
        if "family" not in item:
            g_plan = _unit_plan(where, item, "g", lg, None)
            out.append({"label": item.get("label") or plans_label((g_plan, d_plan)),
                        "g_plan": g_plan, "d_plan": d_plan})
            continue
        if "g" in item:
            raise GansweepError(f"{where}: a family makes G's plans; give 'family', not 'g'")
        modes = as_list(f"{where}.mode", item.get("mode", list(FAMILY_MODES)))
        ns = list(range(1, lg + 1)) if item.get("n", "all") == "all" else \
            as_list(f"{where}.n", item["n"])
        for mode in modes:
            for n in ns:
                typed(f"{where}.n", n, (int,), "an integer")
                g_plan = list(family_plan(item["family"], mode, n, lg))
                out.append({"label": f"G {item['family']} {n} {mode}", "g_plan": g_plan,
                            "d_plan": d_plan, "family": item["family"],
                            "family_mode": mode, "family_n": n})
    labels = [p["label"] for p in out]
    for label in labels:
        if labels.count(label) > 1:
            raise GansweepError(f"plans: duplicate plan {label!r}")
    return out
