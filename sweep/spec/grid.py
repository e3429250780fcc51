"""What a spec expands to: its trials (the Cartesian product of settings and axes, each with
its grid index), the names its settings are shown by, and the confirmation phase's trials.

A setting is a ``Trial`` up to its seed, phase and index (``Trial.setting_key``): one
definition for the driver, the confirmation, the verdict, the tables and the report.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gansweep.core.trial import SETTING_EXCLUDES, Trial

if TYPE_CHECKING:
    from gansweep.sweep.spec.schema import SweepSpec

AXES: dict[str, list] = {  # axis -> default values; each a Trial field
    "target_size": [None], "augment": ["none"], "loss": [None], "lr": [None],
    "g_init": ["pretrained"], "d_init": ["pretrained"], "conditional": [None], "seed": [0],
}


def expand(spec: SweepSpec) -> list[Trial]:
    """(pairs + baselines + plans) x sources x targets x axes, indexed in order. Settings
    that cannot exist (a scratch-initialised net that is frozen or modulated) are left out,
    and the scratch baseline is run once, not once per source."""
    out: list[Trial] = []
    none = {"d": None, "g": None, "baseline": None}
    settings = [{**none, "label": f"{d}{g}", "d": d, "g": g} for d, g in spec.pairs] + \
               [{**none, "label": b, "baseline": b} for b in spec.baselines] + \
               [{**none, **p} for p in spec.plans]
    names = list(AXES)
    for setting in settings:
        sources = spec.sources[:1] if setting["baseline"] == "scratch" else spec.sources
        for source, target, *values in itertools.product(
                sources, spec.targets, *(spec.axes[n] for n in names)):
            axes = dict(zip(names, values))
            if _init_compatible(setting, axes["g_init"], axes["d_init"]):
                out.append(Trial(source=source, target=target, modulation=spec.modulation,
                                 freeze_d_depth=spec.freeze_d_depth, index=len(out),
                                 **setting, **axes))
    return out


def _init_compatible(setting: dict[str, Any], g_init: str, d_init: str) -> bool:
    d, g, baseline = setting["d"], setting["g"], setting["baseline"]
    if "g_plan" in setting:  # explicit plans say themselves what is re-initialised
        return g_init == d_init == "pretrained"
    if baseline is not None and baseline != "fine-tune":
        return g_init == d_init == "pretrained"
    # Partition strings are canonical here (str(Partition)): "G(0,0,L)" = fully fine-tuned.
    if g_init == "scratch" and g is not None and not g.startswith("G(0,0,"):
        return False
    return not (d_init == "scratch" and d is not None and not d.startswith("D(0,0,"))


def _shown(field: str, value: Any) -> str:
    if value is None:
        return "none"
    if field in ("source", "target"):
        return Path(value).name
    return ",".join(value) if isinstance(value, list) else str(value)


def setting_names(trials: Sequence[Trial]) -> dict[str, str]:
    """Setting key -> the name a user reads: its label, and the value of every field in
    which settings sharing that label differ (``fine-tune conditional=ac``)."""
    by_label: dict[str, dict[str, Trial]] = {}
    for t in trials:
        by_label.setdefault(t.label, {})[t.setting_key] = t
    names = {}
    skip = {*SETTING_EXCLUDES, "label"}
    for label, settings in by_label.items():
        differ = [f.name for f in fields(Trial) if f.name not in skip and
                  len({repr(getattr(t, f.name)) for t in settings.values()}) > 1]
        for key, t in settings.items():
            names[key] = " ".join([label, *(f"{f}={_shown(f, getattr(t, f))}" for f in differ)])
    return names


def confirmation_trials(spec: SweepSpec, ranked: Sequence[str]) -> tuple[list[str], list[Trial]]:
    """The confirmation phase: the ``confirm.top`` best settings of the search (``ranked``,
    best first: ``sweep.spec.ranking.rank_settings``) and every baseline, each on the fresh
    seeds; their names and their trials, indexed in order. Without ``confirm:``, a structured
    search's own confirmation: its candidates (``ranked``: ``sweep.searchers.confirm``) on
    ``search.confirm_seeds`` seeds after the search's, no baselines (they ran in the search,
    and its pick is on the mean over the search's and these seeds)."""
    grid = spec.trials()
    settings = {t.setting_key: t for t in grid}
    if spec.confirm is None:
        first = max(spec.axes["seed"]) + 1
        chosen, seeds = list(ranked), list(range(first, first + spec.search.confirm_seeds))
    else:
        chosen, seeds = list(ranked[:spec.confirm.top]), list(spec.confirm.seeds)
        chosen += [k for k, t in settings.items() if t.baseline is not None and k not in chosen]
    trials = [replace(settings[k], seed=seed, phase="confirm")
              for k in chosen for seed in seeds]
    names = setting_names(grid)
    return [names[k] for k in chosen], [replace(t, index=i) for i, t in enumerate(trials)]


DRY_RUN_COLUMNS = ["label", "source", "target", "target_size", "augment", "loss", "lr",
                   "g_init", "d_init", "conditional", "seed"]


def describe(spec: SweepSpec) -> str:
    """What ``launch --dry-run`` prints: the trial table, then the counts of the search
    and of the confirmation phase."""
    trials = spec.trials()
    # The scratch baseline (and a trial without a source) trains both nets from random
    # weights, whatever its init axes hold.
    fresh = {"g_init": "scratch", "d_init": "scratch"}
    rows = [{**t.to_dict(), "source": Path(t.source).name if t.source else "-",
             "target": Path(t.target).name,
             **(fresh if t.baseline == "scratch" or t.source is None else {})} for t in trials]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in DRY_RUN_COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in DRY_RUN_COLUMNS)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in DRY_RUN_COLUMNS) for r in rows]
    n_pairs = sum(1 for t in trials if t.d is not None)
    n_plans = sum(1 for t in trials if t.g_plan is not None)
    plans = f" + {n_plans} per-unit plan trials" if n_plans else ""
    lines.append(
        f"# {len(trials)} trials: {n_pairs} partition trials ({len(spec.pairs)} D x G pairs) "
        f"+ {len(trials) - n_pairs - n_plans} baseline trials "
        f"({', '.join(spec.baselines) or 'none'}){plans}, "
        f"over {len(spec.sources)} source(s), {len(spec.targets)} target(s) and the axes "
        + ", ".join(f"{k}={v}" for k, v in spec.axes.items() if len(v) > 1 or v[0] is not None))
    if spec.search.type != "grid":
        lines.append(f"# search: {spec.search.type}: of these, the baselines, then a design "
                     f"covering every D and G partition and the pairs the partition model "
                     f"chooses: {spec.search.budget(len(spec.pairs))} of the "
                     f"{len(spec.pairs)} pairs per context (more if the design needs them), "
                     f"each on every seed")
    if spec.confirm is not None:
        baselines = {t.setting_key for t in trials if t.baseline is not None}
        settings = spec.confirm.top + len(baselines)
        lines.append(f"# then the confirmation phase: {settings * len(spec.confirm.seeds)} "
                     f"trials (the {spec.confirm.top} best settings of the search and every "
                     f"baseline, on seeds {list(spec.confirm.seeds)}, each to the full budget)")
    elif spec.search.confirms:
        n = spec.search.confirm_top * spec.search.confirm_seeds
        lines.append(f"# then the search's own confirmation: at most {n} trials (its "
                     f"{spec.search.confirm_top} best candidates on {spec.search.confirm_seeds} "
                     f"further seed(s), each to the full budget; the pick is on the mean)")
    return "\n".join(lines)
