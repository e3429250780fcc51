"""Sweep specs: a YAML file -> a validated ``SweepSpec`` -> the list of trials it expands to.

Every error names the field and the bad value; an unknown key suggests the closest valid one.
Relative paths in a spec are relative to the spec file's folder.
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gansweep.core.augment import parse_augment
from gansweep.core.checkpoint import load_checkpoint
from gansweep.core.config import INITS, TrainConfig
from gansweep.core.data import class_names
from gansweep.core.errors import GansweepError
from gansweep.core.losses import LOSSES
from gansweep.core.lpips import resolve_lpips_weights
from gansweep.core.metrics import METRICS
from gansweep.core.models import COND_HEADS, ArchConfig, cross_resolution, unit_counts
from gansweep.core.treatments import (
    BASELINES,
    BN_STATS,
    FAMILY_MODES,
    check_plan,
    enumerate_partitions,
    family_plan,
    parse_partition,
    plans_label,
)
from gansweep.sweep.ranking import ScoreRule
from gansweep.sweep.trackers import TRACKERS

MODULATIONS = ("adafm", "filter-shift")


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(where: str, data: dict, valid: list[str]) -> None:
    for key in data:
        if key not in valid:
            raise GansweepError(f"{where}: unknown key {key!r}{_suggest(str(key), valid)}; "
                                f"valid: {', '.join(valid)}")


def _typed(where: str, value: Any, types: tuple[type, ...], what: str) -> Any:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise GansweepError(f"{where}: {value!r} is not {what}")
    return value


def _as_list(where: str, value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    seen = []
    for v in values:
        if v in seen:
            raise GansweepError(f"{where}: duplicate value {v!r}")
        seen.append(v)
    if not values:
        raise GansweepError(f"{where}: empty list")
    return values


@dataclass(frozen=True)
class Budget:
    iters: int
    eval_every: int
    fid_samples: int = 256
    batch_size: int = 64
    fid_real: int | None = None
    eval_at_start: bool = False  # also evaluate iteration 0 (the source, before training)


@dataclass(frozen=True)
class Training:
    """Optimiser and loss options shared by every trial (core.config.TrainConfig)."""

    lr_mult: dict = field(default_factory=dict)  # treatment -> multiplier of lr
    label_smoothing: float = 0.0  # loss 'bce' only
    label_noise: float = 0.0  # loss 'bce' only
    r1_gamma: float | None = None  # loss 'stylegan2' only (None: 10)
    path_length: float = 0.0  # loss and architecture 'stylegan2' only (0: off)


@dataclass(frozen=True)
class Scheduler:
    """ASHA's rungs and what it decides on (sweep.ranking): a trial's ``score`` is a rule
    over its evaluations; with ``noise`` = k > 0 a trial is stopped at a rung only when its
    score is worse than the rung's cutoff by more than k times its sampling sd."""

    type: str = "asha"  # asha | none
    grace_period: int = 1
    reduction_factor: float = 3.0
    score: str = "last"  # last | mean | best: the rule of ScoreRule
    window: int = 1  # evaluations the 'mean' rule averages
    noise: float = 0.0  # k: the stopping margin in sampling sds (0: stop on any deficit)
    rung_fid_samples: int | None = None  # FID on this many samples at the rungs

    @property
    def rule(self) -> ScoreRule:
        return ScoreRule(self.score, self.window)

    def milestones(self, max_t: int) -> list[int]:
        """The iterations at which ASHA decides (Ray's rungs: grace * rf^k up to max_t)."""
        out, t = [], float(self.grace_period)
        while t <= max_t:
            out.append(math.ceil(t))
            t *= self.reduction_factor
        return out


@dataclass(frozen=True)
class Confirm:
    """The confirmation phase: the ``top`` settings of the search and every baseline, rerun
    to the full budget on fresh ``seeds``."""

    top: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Trial:
    """One trial's settings; ``to_dict`` is what Ray Tune carries as the trial config."""

    label: str
    source: str | None
    target: str
    d: str | None
    g: str | None
    baseline: str | None
    modulation: str
    freeze_d_depth: int | None
    target_size: int | None
    augment: str
    loss: str
    lr: float | None
    g_init: str
    d_init: str
    seed: int
    g_plan: list[str] | None = None  # explicit per-unit plans (``plans:`` in a spec)
    d_plan: list[str] | None = None
    family: str | None = None  # forward | backward, for Denton et al.'s plan families
    family_mode: str | None = None  # freeze | finetune
    family_n: int | None = None  # units transferred
    conditional: str | None = None  # class head (projection | ac) of a conditional transfer
    phase: str = "search"  # search | confirm

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepSpec:
    name: str
    sources: list[str | None]
    targets: list[str]
    arch: ArchConfig | None
    pairs: list[tuple[str, str]]
    baselines: list[str]
    plans: list[dict[str, Any]]  # label, g_plan, d_plan, family, family_mode, family_n
    axes: dict[str, list]
    budget: Budget
    scheduler: Scheduler
    metric: str
    metrics: list[str]
    resources: Resources
    training: Training = field(default_factory=Training)
    modulation: str = "adafm"
    freeze_d_depth: int | None = None
    bn_stats: str = "adapt"
    deterministic: bool = False  # deterministic GPU algorithms (core.numerics)
    ema_kimg: float | None = None  # the EMA generator's half-life (None: evaluate G itself)
    ema_rampup: float | None = None
    confirm: Confirm | None = None
    max_concurrent: int = 0
    max_failures: int = 2
    trackers: list[str] = field(default_factory=list)  # sweep.trackers
    inception_weights: str | None = None
    lpips_weights: str | None = None  # intra_lpips (core.lpips)
    iw_steps: int = 300
    classifier_steps: int = 300
    classifier_negatives: str | None = None  # default: the first source's training data
    problems: list[str] = field(default_factory=list)  # missing files (fatal unless dry run)
    raw: dict[str, Any] = field(default_factory=dict)  # the spec with paths made absolute

    def settings(self) -> list[str]:
        """The distinct settings of the search: its trials up to the seed."""
        return list(dict.fromkeys(setting_key(t.to_dict()) for t in self.trials()))

    def trials(self) -> list[Trial]:
        """The Cartesian product: (pairs + baselines) x sources x targets x axes. Settings
        that cannot exist (a scratch-initialised net that is frozen or modulated) are left
        out, and the scratch baseline is run once, not once per source."""
        out: list[Trial] = []
        none = {"d": None, "g": None, "baseline": None}
        settings = [{**none, "label": f"{d}{g}", "d": d, "g": g} for d, g in self.pairs] + \
                   [{**none, "label": b, "baseline": b} for b in self.baselines] + \
                   [{**none, **p} for p in self.plans]
        names = list(AXES)
        for setting in settings:
            sources = self.sources[:1] if setting["baseline"] == "scratch" else self.sources
            for source, target, *values in itertools.product(
                    sources, self.targets, *(self.axes[n] for n in names)):
                axes = dict(zip(names, values))
                if not _init_compatible(setting, axes["g_init"], axes["d_init"]):
                    continue
                out.append(Trial(source=source, target=target, modulation=self.modulation,
                                 freeze_d_depth=self.freeze_d_depth, **setting, **axes))
        return out


def setting_key(trial: dict[str, Any]) -> str:
    """A trial's setting: everything but its seed and phase (JSON, sorted keys)."""
    return json.dumps({k: v for k, v in trial.items() if k not in ("seed", "phase")},
                      sort_keys=True)


AXES: dict[str, Any] = {  # axis -> default values
    "target_size": [None], "augment": ["none"], "loss": [None], "lr": [None],
    "g_init": ["pretrained"], "d_init": ["pretrained"], "conditional": [None], "seed": [0],
}
TOP_KEYS = ["name", "description", "source", "target", "arch", "partitions", "baselines", "plans",
            "modulation", "freeze_d_depth", "bn_stats", *AXES, "budget", "training", "scheduler",
            "metric", "metrics", "iw_steps", "classifier_steps", "classifier_negatives",
            "resources", "max_concurrent", "max_failures", "trackers", "inception_weights",
            "lpips_weights", "ema_kimg", "ema_rampup", "confirm", "deterministic"]


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


def _path(base: Path, where: str, value: Any, problems: list[str]) -> str:
    _typed(where, value, (str,), "a path")
    p = Path(value).expanduser()
    p = p if p.is_absolute() else (base / p)
    p = Path(str(p.resolve()))
    if not p.exists():
        problems.append(f"{where}: {value!r} does not exist ({p})")
    return str(p)


def _section(where: str, data: Any, cls: type) -> Any:
    if data is None:
        data = {}
    _typed(where, data, (dict,), "a mapping")
    names = [f.name for f in fields(cls)]
    _check_keys(where, data, names)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.type in ("int", "int | None"):
            if value is None and "None" in f.type:
                kwargs[f.name] = None
                continue
            _typed(f"{where}.{f.name}", value, (int,), "an integer")
            if value < (0 if f.name == "eval_every" else 1):
                raise GansweepError(f"{where}.{f.name}: {value!r} is out of range")
        elif f.type == "float":
            _typed(f"{where}.{f.name}", value, (int, float), "a number")
            value = float(value)
        elif f.type == "str":
            _typed(f"{where}.{f.name}", value, (str,), "a string")
        elif f.type == "bool":
            _typed(f"{where}.{f.name}", value, (bool,), "true or false")
        elif f.type == "dict":
            _typed(f"{where}.{f.name}", value, (dict,), "a mapping")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise GansweepError(f"{where}: {e}") from None


SHIPPED = "gansweep.search_spaces"  # the package whose *.yaml files are the shipped specs


def shipped_dir() -> Path:
    """The folder of the shipped specs (inside the installed package)."""
    return Path(str(resources.files(SHIPPED)))


def shipped_specs() -> dict[str, str]:
    """Shipped spec name -> its one-line ``description``."""
    out = {}
    for path in sorted(shipped_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        out[path.stem] = str(data.get("description", "")) if isinstance(data, dict) else ""
    return out


def find_spec(name_or_path: str | Path) -> tuple[Path, Path]:
    """A spec file given as a path or as the name of a shipped spec, and the folder its
    relative paths are relative to: the spec's own folder, except for a shipped spec,
    whose folder is inside the installed package: its paths are relative to the current
    directory."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_dir() / f"{path.name.removesuffix('.yaml')}.yaml"
        if path.parent != Path(".") or not shipped.is_file():
            names = ", ".join(shipped_specs())
            raise GansweepError(f"spec {name_or_path}: no such file, nor a shipped spec "
                                f"(shipped: {names})")
        path = shipped
    path = path.resolve()
    return path, Path.cwd() if path.parent == shipped_dir().resolve() else path.parent


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec: a YAML file, or a shipped spec by name (see
    ``find_spec`` for what relative paths mean). Missing files are collected in
    ``problems``."""
    path, base = find_spec(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise GansweepError(f"spec {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_spec(data, base, str(path))


def parse_spec(data: Any, base: Path, where: str = "spec",
               read_sources: bool = True) -> SweepSpec:
    """Validate a spec's data. ``read_sources=False`` trusts the spec's ``arch`` instead of
    reading every source checkpoint (a resumed sweep: a source may have broken since)."""
    _typed(where, data, (dict,), "a mapping")
    _check_keys(where, data, TOP_KEYS)
    for key in ("name", "target", "budget"):
        if key not in data:
            raise GansweepError(f"{where}: missing required key {key!r}")
    problems: list[str] = []
    name = _typed("name", data["name"], (str,), "a string")
    if not name or "/" in name or name.startswith("."):
        raise GansweepError(f"name: {name!r} must be a non-empty folder name")
    _typed("description", data.get("description", ""), (str,), "a string (one line)")
    sources = [None if s is None else _path(base, "source", s, problems)
               for s in _as_list("source", data.get("source"))]
    targets = [_path(base, "target", t, problems) for t in _as_list("target", data["target"])]

    arch = _arch(data.get("arch"), sources if read_sources else [], problems)
    if arch is None and (data.get("partitions") or data.get("plans")):
        raise GansweepError(f"{problems[0]}; the partitions need the architecture, which comes "
                            f"from the source checkpoint (or give 'arch')")
    lg, ld = unit_counts(arch) if arch else (None, None)
    pairs = _pairs(data.get("partitions", []), ld, lg)
    baselines = _as_list("baselines", data.get("baselines", []))
    for b in baselines:
        _typed("baselines", b, (str,), "a baseline name")
        if b not in BASELINES:
            raise GansweepError(f"baselines: unknown baseline {b!r}{_suggest(b, BASELINES.names())}"
                                f"; valid: {', '.join(BASELINES.names())}")
    plans = _plans(data.get("plans", []), ld, lg)
    if not pairs and not baselines and not plans:
        raise GansweepError("partitions/baselines/plans: the spec selects no trial")
    if None in sources and (any(b != "scratch" for b in baselines) or pairs or plans):
        raise GansweepError("source: null (no source) only allows the 'scratch' baseline")

    axes = {n: _as_list(n, data.get(n, default)) for n, default in AXES.items()}
    for v in axes["target_size"]:
        if v is not None:
            _typed("target_size", v, (int,), "an integer or null")
    for v in axes["augment"]:
        parse_augment(_typed("augment", v, (str,), "a string"))
    for v in axes["loss"]:
        if v is not None:
            LOSSES.get(v)
    for v in axes["lr"]:
        if v is not None and (_typed("lr", v, (int, float), "a number") <= 0):
            raise GansweepError(f"lr: {v!r} must be positive")
    for n in ("g_init", "d_init"):
        for v in axes[n]:
            if v not in INITS:
                raise GansweepError(f"{n}: {v!r} is not one of {INITS}")
    for v in axes["seed"]:
        _typed("seed", v, (int,), "an integer")
    for v in axes["conditional"]:
        if v is not None and v not in COND_HEADS:
            raise GansweepError(f"conditional: {v!r} is not null or one of {COND_HEADS}")
    if any(axes["conditional"]):
        for t in targets:
            if Path(t).is_dir():
                class_names(t)  # a conditional target must have class sub-folders

    metrics = _as_list("metrics", data.get("metrics", ["fid", "kid"]))
    for m in metrics:
        METRICS.get(_typed("metrics", m, (str,), "a metric name"))
    metric = data.get("metric", "fid")
    METRICS.get(metric)
    if metric not in metrics:
        raise GansweepError(f"metric: {metric!r} (what the scheduler ranks by) is not among "
                            f"metrics {metrics}")
    negatives = data.get("classifier_negatives")
    if negatives is not None:
        negatives = _path(base, "classifier_negatives", negatives, problems)
    modulation = data.get("modulation", "adafm")
    if modulation not in MODULATIONS:
        raise GansweepError(f"modulation: {modulation!r} is not one of {MODULATIONS}")
    bn_stats = data.get("bn_stats", "adapt")
    if bn_stats not in BN_STATS:
        raise GansweepError(f"bn_stats: {bn_stats!r} is not one of {BN_STATS}")
    budget = _section("budget", data["budget"], Budget)
    training = _section("training", data.get("training"), Training)
    for loss in axes["loss"]:  # the trial's own checks (core.config), once per loss
        # A null loss is the source's, known when the trial starts: checked as the loss
        # the options need (the trial checks the real one).
        stylegan2 = training.r1_gamma is not None or training.path_length
        loss = loss or ("stylegan2" if stylegan2 else "bce")
        try:
            TrainConfig(data="", out="", loss=loss, lr_mult=training.lr_mult,
                        label_smoothing=training.label_smoothing,
                        label_noise=training.label_noise, r1_gamma=training.r1_gamma,
                        path_length=training.path_length, **({"arch": arch} if arch else {}))
        except GansweepError as e:
            raise GansweepError(f"training.{e}") from None
    scheduler = _section("scheduler", data.get("scheduler"), Scheduler)
    if scheduler.type not in ("asha", "none"):
        raise GansweepError(f"scheduler.type: {scheduler.type!r} is not 'asha' or 'none'")
    if scheduler.reduction_factor <= 1:
        raise GansweepError(f"scheduler.reduction_factor: {scheduler.reduction_factor} must "
                            f"be > 1")
    scheduler.rule  # noqa: B018 -- validates score and window
    if scheduler.noise < 0:
        raise GansweepError(f"scheduler.noise: {scheduler.noise} must be >= 0")
    if scheduler.rung_fid_samples is not None and (
            metric != "fid" or scheduler.rung_fid_samples <= budget.fid_samples):
        raise GansweepError(f"scheduler.rung_fid_samples: {scheduler.rung_fid_samples} needs "
                            f"metric 'fid' and more than budget.fid_samples "
                            f"({budget.fid_samples})")
    ema_kimg, ema_rampup = _ema(data)
    deterministic = _typed("deterministic", data.get("deterministic", False), (bool,),
                           "true or false")
    resources = _section("resources", data.get("resources"), Resources)
    if resources.cpu <= 0 or resources.gpu < 0:
        raise GansweepError(f"resources: cpu must be > 0 and gpu >= 0, got {resources}")
    trackers = _as_list("trackers", data["trackers"]) if data.get("trackers") else []
    for t in trackers:
        TRACKERS.get(_typed("trackers", t, (str,), "a tracker name"))
    weights = data.get("inception_weights")
    if weights is not None:
        weights = _path(base, "inception_weights", weights, problems)
    lpips = data.get("lpips_weights")
    if lpips is not None:
        lpips = _path(base, "lpips_weights", lpips, problems)
    elif "intra_lpips" in metrics:
        resolve_lpips_weights(None)  # $GANSWEEP_LPIPS_WEIGHTS, else one clear line
    ints = {}
    for key, low in (("max_concurrent", 0), ("max_failures", 0), ("freeze_d_depth", 0),
                     ("iw_steps", 1), ("classifier_steps", 1)):
        value = data.get(key)
        if value is not None:
            _typed(key, value, (int,), "an integer")
            if value < low:
                raise GansweepError(f"{key}: {value!r} must be >= {low}")
            ints[key] = value
    raw = {**data, "source": sources if isinstance(data.get("source"), list) else sources[0],
           "target": targets if isinstance(data["target"], list) else targets[0],
           **({"arch": asdict(arch)} if arch else {})}
    for key, value in (("inception_weights", weights), ("lpips_weights", lpips),
                       ("classifier_negatives", negatives)):
        if value is not None:
            raw[key] = value
    spec = SweepSpec(name, sources, targets, arch, pairs, baselines, plans, axes, budget,
                     scheduler, metric, metrics, resources, training, modulation,
                     bn_stats=bn_stats,
                     ema_kimg=ema_kimg, ema_rampup=ema_rampup, deterministic=deterministic,
                     trackers=trackers, inception_weights=weights, lpips_weights=lpips,
                     classifier_negatives=negatives,
                     problems=problems, raw=raw, **ints)
    spec.confirm = _confirm(data.get("confirm"), axes["seed"], len(spec.settings()))
    return spec


# The EMA generator's defaults for sweeps (benchmarks/RESULTS.md section 4 measured them);
# 'ema_kimg: off' evaluates G itself, the papers' protocol.
DEFAULT_EMA_KIMG = 10.0
DEFAULT_EMA_RAMPUP = 0.05


def _ema(data: dict) -> tuple[float | None, float | None]:
    kimg = data.get("ema_kimg", DEFAULT_EMA_KIMG)
    rampup = data.get("ema_rampup", DEFAULT_EMA_RAMPUP)
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
    _typed("confirm", data, (dict,), "a mapping {top: k, seeds: [...]}")
    _check_keys("confirm", data, ["top", "seeds"])
    for key in ("top", "seeds"):
        if key not in data:
            raise GansweepError(f"confirm: missing key {key!r}")
    top = _typed("confirm.top", data["top"], (int,), "an integer")
    if not 1 <= top <= settings:
        raise GansweepError(f"confirm.top: {top} must be between 1 and the {settings} "
                            f"settings of the search")
    seeds = _as_list("confirm.seeds", data["seeds"])
    for s in seeds:
        _typed("confirm.seeds", s, (int,), "an integer")
    reused = sorted(set(seeds) & set(search_seeds))
    if reused:
        raise GansweepError(f"confirm.seeds: {reused} are also search seeds {search_seeds}; "
                            f"confirmation needs fresh seeds")
    return Confirm(top, tuple(seeds))


def _arch(data: Any, sources: list[str | None], problems: list[str]) -> ArchConfig | None:
    """The architecture every source must have: from the spec's ``arch`` (name, resolution,
    ...) checked against each source's metadata, or from the first source."""
    found = []
    for s in sources:
        if s is not None and Path(s).is_file():
            found.append((s, ArchConfig(**load_checkpoint(s)["arch"])))
    if data is None:
        if not found:
            if not problems:
                raise GansweepError("arch: needed when no source checkpoint gives it")
            return None
        want = found[0][1]
        check = asdict(want)
    else:
        _typed("arch", data, (dict,), "a mapping")
        _check_keys("arch", data, [f.name for f in fields(ArchConfig)])
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


def _pairs(data: Any, ld: int | None, lg: int | None) -> list[tuple[str, str]]:
    """``all``, ``{d: all|[...], g: all|[...]}`` (their product) or ``[[D, G], ...]``."""
    if data in ([], None):
        return []
    if ld is None or lg is None:
        raise GansweepError("partitions: the unit count needs the architecture (give 'arch')")

    def side(net: str, units: int, value: Any) -> list[str]:
        if value == "all":
            return [str(p) for p in enumerate_partitions(net, units)]
        return [str(parse_partition(v, units, net)) for v in _as_list(f"partitions.{net.lower()}",
                                                                     value)]

    if data == "all":
        return [(d, g) for d in side("D", ld, "all") for g in side("G", lg, "all")]
    if isinstance(data, dict):
        _check_keys("partitions", data, ["d", "g"])
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


def _plans(data: Any, ld: int | None, lg: int | None) -> list[dict[str, Any]]:
    """``plans:`` entries, each explicit (``{g: [...], d: [...], label?}``, one treatment
    per unit, or one name for every unit) or a family (``{family: forward|backward,
    mode: freeze|finetune or a list, n: all or a list, d: ...}``, Denton et al.)."""
    if data in ([], None):
        return []
    if ld is None or lg is None:
        raise GansweepError("plans: the unit count needs the architecture (give 'arch')")
    out: list[dict[str, Any]] = []
    for k, item in enumerate(_as_list("plans", data)):
        where = f"plans[{k}]"
        _typed(where, item, (dict,), "a mapping")
        _check_keys(where, item, PLAN_KEYS)
        d_plan = _unit_plan(where, item, "d", ld, "reinit" if "family" in item else None)
        if "family" not in item:
            g_plan = _unit_plan(where, item, "g", lg, None)
            out.append({"label": item.get("label") or plans_label((g_plan, d_plan)),
                        "g_plan": g_plan, "d_plan": d_plan})
            continue
        if "g" in item:
            raise GansweepError(f"{where}: a family makes G's plans; give 'family', not 'g'")
        modes = _as_list(f"{where}.mode", item.get("mode", list(FAMILY_MODES)))
        ns = list(range(1, lg + 1)) if item.get("n", "all") == "all" else \
            _as_list(f"{where}.n", item["n"])
        for mode in modes:
            for n in ns:
                _typed(f"{where}.n", n, (int,), "an integer")
                g_plan = list(family_plan(item["family"], mode, n, lg))
                out.append({"label": f"G {item['family']} {n} {mode}", "g_plan": g_plan,
                            "d_plan": d_plan, "family": item["family"],
                            "family_mode": mode, "family_n": n})
    labels = [p["label"] for p in out]
    for label in labels:
        if labels.count(label) > 1:
            raise GansweepError(f"plans: duplicate plan {label!r}")
    return out
