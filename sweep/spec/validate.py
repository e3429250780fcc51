"""A sweep spec's YAML data -> a validated ``SweepSpec`` (``sweep.spec.schema``).

Every error names the field and the bad value; an unknown key suggests the closest valid
one. Relative paths are relative to ``base`` (the spec file's folder: ``sweep.spec.files``).
Each source checkpoint's metadata is read once, into the spec's trial template, and every
setting's run config is made once here as its trials' will be, so what a trial would refuse
is refused before anything starts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from gansweep.core.augment import parse_augment
from gansweep.core.checkpoint import SourceInfo, read_source
from gansweep.core.config import MAX_SEED, TrainConfig
from gansweep.core.data import class_names, list_images
from gansweep.core.errors import GansweepError
from gansweep.core.losses import LOSSES
from gansweep.core.metrics import METRICS
from gansweep.core.models import COND_HEADS, ArchConfig, cross_resolution, unit_counts
from gansweep.core.treatments import (
    BASELINES,
    check_modulation,
)
from gansweep.core.trial import INITS, TrialTemplate, trial_config
from gansweep.sweep.spec.fields import as_list, check_keys, path, section, suggest, typed
from gansweep.sweep.spec.grid import AXES
from gansweep.sweep.spec.pairs import parse_pairs, parse_plans
from gansweep.sweep.spec.ranges import SEARCH_TYPES, check_scheduler, check_search
from gansweep.sweep.spec.schema import (
    SEARCHES,
    Budget,
    Confirm,
    Resources,
    Scheduler,
    Search,
    SweepSpec,
    Training,
)
from gansweep.sweep.spec.trackers import TRACKERS

TOP_KEYS = ["name", "description", "source", "target", "arch", "partitions", "baselines", "plans",
            "modulation", "freeze_d_depth", "bn_stats", *AXES, "budget", "training", "scheduler",
            "metric", "metrics", "iw_steps", "classifier_steps", "classifier_negatives",
            "resources", "max_concurrent", "max_failures", "trackers", "inception_weights",
            "lpips_weights", "ema_kimg", "ema_rampup", "confirm", "deterministic", "search"]


def check_name(name: Any, where: str = "name") -> str:
    """A sweep's name: one folder name under the storage, never a path."""
    typed(where, name, (str,), "a string")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise GansweepError(f"{where}: {name!r} must be a non-empty folder name (no '/', not "
                            f"starting with '.')")
    return name


def parse_spec(data: Any, base: Path, where: str = "spec",
               read_sources: bool = True) -> SweepSpec:
    """Validate a spec's data. ``read_sources=False`` trusts the spec's ``arch`` instead of
    reading every source checkpoint (a recorded spec: a source may have broken since) and
    makes no trial template."""
    typed(where, data, (dict,), "a mapping")
    check_keys(where, data, TOP_KEYS)
    for key in ("name", "target", "budget"):
        if key not in data:
            raise GansweepError(f"{where}: missing required key {key!r}")
    problems: list[str] = []
    name = check_name(data["name"])
    typed("description", data.get("description", ""), (str,), "a string (one line)")
    sources = [None if s is None else path(base, "source", s, problems)
               for s in as_list("source", data.get("source"))]
    targets = [path(base, "target", t, problems) for t in as_list("target", data["target"])]
    infos = {s: read_source(s) for s in sources
             if read_sources and s is not None and Path(s).is_file()}

    arch = _arch(data.get("arch"), infos, problems)
    if arch is None and (data.get("partitions") or data.get("plans")):
        raise GansweepError(f"{problems[0]}; the partitions need the architecture, which comes "
                            f"from the source checkpoint (or give 'arch')")
    lg, ld = unit_counts(arch) if arch else (None, None)
    pairs = parse_pairs(data.get("partitions", []), ld, lg)
    baselines = _baselines(data.get("baselines"))
    plans = parse_plans(data.get("plans", []), ld, lg)
    if not pairs and not baselines and not plans:
        raise GansweepError("partitions/baselines/plans: the spec selects no trial")
    if None in sources and (any(b != "scratch" for b in baselines) or pairs or plans):
        raise GansweepError("source: null (no source) only allows the 'scratch' baseline")

    axes = _axes(data, targets)
    if read_sources:  # a recorded spec's targets were read at its launch
        _check_targets(targets, axes["target_size"], problems)
    metrics = as_list("metrics", data.get("metrics", TrainConfig.default("metrics")))
    for m in metrics:
        METRICS.get(typed("metrics", m, (str,), "a metric name"))
    metric = data.get("metric", "fid")
    METRICS.get(metric)
    if metric not in metrics:
        raise GansweepError(f"metric: {metric!r} (what the scheduler ranks by) is not among "
                            f"metrics {metrics}")
    negatives = data.get("classifier_negatives")
    if negatives is not None:
        negatives = path(base, "classifier_negatives", negatives, problems)
    modulation = check_modulation(data.get("modulation", "adafm"))
    budget = section("budget", data["budget"], Budget)
    training = section("training", data.get("training"), Training)
    scheduler = _scheduler(data.get("scheduler"), metric, budget)
    ema_kimg, ema_rampup = _ema(data)
    deterministic = typed("deterministic", data.get("deterministic", False), (bool,),
                           "true or false")
    resources = section("resources", data.get("resources"), Resources)
    if not 0 < resources.cpu < math.inf or not 0 <= resources.gpu < math.inf:
        raise GansweepError(f"resources: cpu must be a number > 0 and gpu a number >= 0, got "
                            f"cpu {resources.cpu!r}, gpu {resources.gpu!r}")
    trackers = as_list("trackers", data["trackers"]) if data.get("trackers") else []
    for t in trackers:
        TRACKERS.get(typed("trackers", t, (str,), "a tracker name"))
    weights = data.get("inception_weights")
    if weights is not None:
        weights = path(base, "inception_weights", weights, problems)
    lpips = data.get("lpips_weights")
    if lpips is not None:
        lpips = path(base, "lpips_weights", lpips, problems)
    ints = {}
    for key, low in (("max_concurrent", 0), ("max_failures", 0), ("freeze_d_depth", 0),
                     ("iw_steps", 1), ("classifier_steps", 1)):
        value = data.get(key)
        if value is not None:
            typed(key, value, (int,), "an integer")
            if value < low:
                raise GansweepError(f"{key}: {value!r} must be >= {low}")
            ints[key] = value
    if ints.get("freeze_d_depth") is not None and "freeze-d" not in baselines:
        raise GansweepError("freeze_d_depth: only the freeze-d baseline has it, and "
                            "baselines does not list freeze-d")
    raw = {**data, "source": sources if isinstance(data.get("source"), list) else sources[0],
           "target": targets if isinstance(data["target"], list) else targets[0],
           **({"arch": asdict(arch)} if arch else {})}
    for key, value in (("inception_weights", weights), ("lpips_weights", lpips),
                       ("classifier_negatives", negatives)):
        if value is not None:
            raw[key] = value
    spec = SweepSpec(name, sources, targets, arch, pairs, baselines, plans, axes, budget,
                     scheduler, metric, metrics, resources, training, modulation,
                     bn_stats=data.get("bn_stats", TrainConfig.default("bn_stats")),
                     ema_kimg=ema_kimg, ema_rampup=ema_rampup, deterministic=deterministic,
                     trackers=trackers, inception_weights=weights, lpips_weights=lpips,
                     classifier_negatives=negatives, problems=problems, raw=raw, **ints)
    spec.confirm = _confirm(data.get("confirm"), axes["seed"], len(spec.settings()))
    spec.search = _search(data.get("search"), pairs, plans)
    if read_sources and not problems:
        spec.template = TrialTemplate(spec.options(), infos, arch.resolution, arch)
        _check_trials(spec)
    return spec


def _baselines(data: Any) -> list[str]:
    """The baselines to run (absent or empty: none)."""
    if data in (None, []):
        return []
    baselines = as_list("baselines", data)
    for b in baselines:
        typed("baselines", b, (str,), "a baseline name")
        if b not in BASELINES:
            raise GansweepError(f"baselines: unknown baseline {b!r}{suggest(b, BASELINES.names())}"
                                f"; valid: {', '.join(BASELINES.names())}")
    return baselines


def _check_targets(targets: list[str], sizes: list, problems: list[str]) -> None:
    """Each existing target is a folder with images, as many as the largest target_size."""
    wanted = max((n for n in sizes if n is not None), default=None)
    for t in targets:
        if not Path(t).exists():
            continue  # path() has said so
        try:
            have = len(list_images(t))
        except GansweepError as e:
            problems.append(f"target: {e}")
            continue
        if wanted is not None and wanted > have:
            problems.append(f"target_size: {wanted} is more than the {have} images of {t}")


def _axes(data: dict, targets: list[str]) -> dict[str, list]:
    axes = {n: as_list(n, data.get(n, default)) for n, default in AXES.items()}
    for v in axes["target_size"]:
        if v is not None:
            typed("target_size", v, (int,), "an integer or null")
    for v in axes["augment"]:
        parse_augment(typed("augment", v, (str,), "a string"))
    for v in axes["loss"]:
        if v is not None:
            LOSSES.get(v)
    for v in axes["lr"]:
        if v is not None and (typed("lr", v, (int, float), "a number") <= 0):
            raise GansweepError(f"lr: {v!r} must be positive")
    for n in ("g_init", "d_init"):
        for v in axes[n]:
            if v not in INITS:
                raise GansweepError(f"{n}: {v!r} is not one of {INITS}")
    for v in axes["seed"]:
        if not 0 <= typed("seed", v, (int,), "an integer") <= MAX_SEED:
            raise GansweepError(f"seed: {v!r} must be an integer in [0, {MAX_SEED}]")
    for v in axes["conditional"]:
        if v is not None and v not in COND_HEADS:
            raise GansweepError(f"conditional: {v!r} is not null or one of {COND_HEADS}")
    if any(axes["conditional"]):
        for t in targets:
            if Path(t).is_dir():
                class_names(t)  # a conditional target must have class sub-folders
    return axes


def _scheduler(data: Any, metric: str, budget: Budget) -> Scheduler:
    return check_scheduler(section("scheduler", data, Scheduler), metric,
                           lambda key: f"scheduler.{key}", budget.iters, budget.fid_samples)


# Where each shared TrainConfig field comes from in a spec, to name it in an error.
SPEC_FIELDS = {**{f.name: f"budget.{f.name}" for f in fields(Budget)},
               **{f.name: f"training.{f.name}" for f in fields(Training)}}


def _check_trials(spec: SweepSpec) -> None:
    """Each setting's config is made as its trials' will be (``core.trial.trial_config``),
    so whatever a trial would refuse is a spec error now."""
    seen = set()
    for t in spec.trials():
        if (t.setting_key, t.seed) in seen or t.seed != spec.axes["seed"][0]:
            continue
        seen.add((t.setting_key, t.seed))
        try:
            trial_config(spec.template, t)
        except GansweepError as e:
            field, sep, rest = str(e).partition(": ")
            raise GansweepError(f"{SPEC_FIELDS[field]}: {rest}" if sep and field in SPEC_FIELDS
                                else str(e)) from None


def _ema(data: dict) -> tuple[float | None, float | None]:
    kimg = data.get("ema_kimg", TrainConfig.default("ema_kimg"))
    rampup = data.get("ema_rampup", TrainConfig.default("ema_rampup"))
    if kimg in ("off", None, False):
        return None, None
    for key, value in (("ema_kimg", kimg), ("ema_rampup", rampup)):
        if value is not None and (not isinstance(value, (int, float)) or
                                  isinstance(value, bool) or value <= 0):
            raise GansweepError(f"{key}: {value!r} must be a positive number"
                                + (" or 'off'" if key == "ema_kimg" else " or null"))
    return float(kimg), None if rampup is None else float(rampup)


def _confirm(data: Any, search_seeds: list[int], settings: int) -> Confirm | None:
    if data is None:
        return None
    typed("confirm", data, (dict,), "a mapping {top: k, seeds: [...]}")
    check_keys("confirm", data, ["top", "seeds"])
    for key in ("top", "seeds"):
        if key not in data:
            raise GansweepError(f"confirm: missing key {key!r}")
    top = typed("confirm.top", data["top"], (int,), "an integer")
    if not 1 <= top <= settings:
        raise GansweepError(f"confirm.top: {top} must be between 1 and the {settings} "
                            f"settings of the search")
    seeds = as_list("confirm.seeds", data["seeds"])
    for s in seeds:
        typed("confirm.seeds", s, (int,), "an integer")
    reused = sorted(set(seeds) & set(search_seeds))
    if reused:
        raise GansweepError(f"confirm.seeds: {reused} are also search seeds {search_seeds}; "
                            f"confirmation needs fresh seeds")
    return Confirm(top, tuple(seeds))


def _search(data: Any, pairs: list[tuple[str, str]], plans: list[dict[str, Any]]) -> Search:
    """``search: {type: grid | structured, max_pairs | fraction, stop, seed, confirm_top,
    confirm_seeds}``."""
    if data is None:
        return Search()
    typed("search", data, (dict,), "a mapping {type: grid | structured, ...}")
    check_keys("search", data, [f.name for f in fields(Search)])
    name = typed("search.type", data.get("type", "grid"), (str,), "a string")
    if name not in SEARCHES:
        raise GansweepError(f"search.type: {name!r}{suggest(name, SEARCHES.names())} is not "
                            f"one of {', '.join(SEARCHES.names())}")
    kind = SEARCHES.get(name)
    values: dict[str, Any] = {"type": kind.name}
    for key, (types, what) in SEARCH_TYPES.items():
        if data.get(key) is not None:
            values[key] = typed(f"search.{key}", data[key], types, what)
    check_search(values, "search", lambda key: f"search.{key}")
    if "seed" in data:
        values["seed"] = typed("search.seed", data["seed"], (int,), "an integer")
    if kind.name == "grid" and len(values) > 1:
        extra = sorted(set(values) - {"type"})
        raise GansweepError(f"search: {extra} apply to type 'structured', not {kind.name!r}")
    if kind.needs_pairs and (not pairs or plans):
        raise GansweepError(f"search.type: {kind.name!r} needs a grid of D x G partition pairs "
                            f"without per-unit plans (this spec has {len(pairs)} pairs and "
                            f"{len(plans)} plans); keep search: {{type: grid}}")
    return Search(**values)


def _arch(data: Any, infos: dict[str, SourceInfo], problems: list[str]) -> ArchConfig | None:
    """The architecture every source must have: from the spec's ``arch`` (name, resolution,
    ...) checked against each source's metadata, or from the first source."""
    found = [(s, info.arch) for s, info in infos.items()]
    if data is None:
        if not found:
            if not problems:
                raise GansweepError("arch: needed when no source checkpoint gives it")
            return None
        want = found[0][1]
        check = asdict(want)
    else:
        typed("arch", data, (dict,), "a mapping")
        check_keys("arch", data, [f.name for f in fields(ArchConfig)])
        try:
            want = ArchConfig(**{**({} if not found else asdict(found[0][1])), **data})
        except TypeError as e:
            raise GansweepError(f"arch: {e}") from None
        check = data
        lower = found and want.resolution < found[0][1].resolution
        if lower:  # a transfer to a lower resolution (models.cross_resolution)
            want = cross_resolution(found[0][1], want.resolution)[0]
            check = {k: v for k, v in data.items() if k not in ("resolution", "width")}
    for s, have in found:
        for key, value in check.items():
            if getattr(have, key) != value:
                raise GansweepError(f"source: {s} has arch.{key} = {getattr(have, key)!r}, "
                                    f"but the spec requires {value!r}")
    return want
