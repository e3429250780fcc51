"""The one training loop: pretraining, every transfer treatment and every baseline.

``train(cfg)`` = ``setup`` -> repeat ``train_step`` -> every ``eval_every`` iterations
``evaluate`` + ``snapshot`` + the caller's callback (the sweep reports to Ray Tune there).
An iteration is one generator update after ``n_critic`` critic updates.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from gansweep.core.augment import Augmentation, parse_augment
from gansweep.core.critics import TargetClassifier, train_classifier
from gansweep.core.data import (
    BatchSampler,
    ImageSet,
    class_names,
    load_folder,
    quantize,
    to_float,
)
from gansweep.core.errors import DivergenceError, GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.losses import LOSSES, Loss, get_loss
from gansweep.core.metrics import (
    METRICS,
    Evaluation,
    FeatureStats,
    compute_metrics,
    get_extractor,
    per_class_fid,
    real_stats,
    resolve_weights,
)
from gansweep.core.models import (
    COND_HEADS,
    ArchConfig,
    ClassHead,
    FilterShift,
    TransferNet,
    build_models,
    load_source_state,
    unit_counts,
)
from gansweep.core.treatments import (
    BN_STATS,
    AdaFM,
    PlanPair,
    apply_plan,
    baseline_pair,
    check_plan,
    count_trainable,
    parse_partition,
    partition_pair,
    plans_label,
    trainable_parameters,
)

CHECKPOINT_FORMAT = "gansweep-checkpoint/1"
INITS = ("pretrained", "scratch")


def default_cache_dir() -> str:
    return os.environ.get("GANSWEEP_CACHE", str(Path.home() / ".cache" / "gansweep"))


@dataclass
class TrainConfig:
    """Everything that defines one training run. Validated on construction; every field
    error names the field and the bad value."""

    data: str
    out: str
    arch: ArchConfig = field(default_factory=ArchConfig)
    source: str | None = None  # checkpoint to transfer from; None = train from scratch
    g_plan: list[str] | None = None  # one treatment per unit; None = fine-tune all
    d_plan: list[str] | None = None
    label: str = "run"
    loss: str = "wgan"
    lr: float | None = None  # None: the loss's default
    n_critic: int | None = None  # None: the loss's default
    batch_size: int = 64
    iters: int = 1000
    eval_every: int = 0  # 0: evaluate only at the end
    fid_samples: int = 256
    fid_real: int | None = None  # cap on real reference images (deterministic subset)
    metrics: list[str] = field(default_factory=lambda: ["fid", "kid"])
    iw_steps: int = 300  # training steps of the independent critic, per evaluation
    classifier_negatives: str | None = None  # "other" images of the classifier metric
    classifier_steps: int = 300
    ac_weight: float = 1.0  # alpha_D = alpha_G of an AC head (Wang et al. eq. 7-8)
    target_size: int | None = None
    augment: str = "none"
    seed: int = 0
    bn_stats: str = "adapt"
    inception_weights: str | None = None
    cache_dir: str | None = None  # real-data FID statistics; None: $GANSWEEP_CACHE or ~/.cache
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.arch, dict):
            self.arch = ArchConfig(**self.arch)
        LOSSES.get(self.loss)
        parse_augment(self.augment)
        for name in self.metrics:
            METRICS.get(name)
        positive = {"batch_size": self.batch_size, "iters": self.iters,
                    "fid_samples": self.fid_samples, "iw_steps": self.iw_steps,
                    "classifier_steps": self.classifier_steps}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GansweepError(f"{name}: {value!r} must be a positive integer")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise GansweepError(f"eval_every: {self.eval_every!r} must be an integer >= 0")
        for name in ("target_size", "fid_real", "n_critic"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise GansweepError(f"{name}: {value!r} must be a positive integer or null")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise GansweepError(f"lr: {self.lr!r} must be a positive number")
        if "classifier" in self.metrics and self.classifier_negatives is None:
            raise GansweepError("classifier_negatives: the 'classifier' metric needs a folder "
                                "of images that are not the target (default: the source's "
                                "training data)")
        if not (isinstance(self.ac_weight, (int, float)) and self.ac_weight >= 0):
            raise GansweepError(f"ac_weight: {self.ac_weight!r} must be a number >= 0")
        if self.bn_stats not in BN_STATS:
            raise GansweepError(f"bn_stats: {self.bn_stats!r} is not one of {BN_STATS}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda")):
            raise GansweepError(f"device: {self.device!r} is not auto, cpu or cuda[:N]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GansweepError(f"unknown config field(s) {unknown}")
        return cls(**d)


# --- checkpoints ---------------------------------------------------------------------------

def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a gansweep checkpoint (tensors and plain data only: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise GansweepError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a zip/pickle, or holding arbitrary objects
        raise GansweepError(f"checkpoint {path}: not a readable gansweep checkpoint "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GansweepError(f"checkpoint {path}: not a gansweep checkpoint (no "
                            f"'{CHECKPOINT_FORMAT}' format marker)")
    for key in ("arch", "G", "D", "plans", "config"):
        if key not in ckpt:
            name = {"G": "the generator G", "D": "the discriminator D"}.get(key, f"'{key}'")
            raise GansweepError(f"checkpoint {path}: missing {name}")
    return ckpt


def _load_state(net: TransferNet, state: dict, what: str, path: str) -> None:
    try:
        load_source_state(net, state)
    except RuntimeError as e:
        raise GansweepError(f"checkpoint {path}: {what} does not fit the architecture "
                            f"({str(e).splitlines()[0][:160]})") from None


# --- the loop ------------------------------------------------------------------------------

@dataclass
class TrainState:
    cfg: TrainConfig
    device: torch.device
    G: TransferNet
    D: TransferNet
    opt_g: torch.optim.Optimizer | None
    opt_d: torch.optim.Optimizer | None
    loss: Loss
    n_critic: int
    augmentation: Augmentation
    data: torch.Tensor  # uint8 training images on the device
    labels: torch.Tensor | None  # their classes, for a conditional network
    sampler: BatchSampler
    reference: ImageSet  # what generated images are compared with
    real: FeatureStats | None
    classifier: TargetClassifier | None
    clip_params: list[torch.nn.Parameter]
    iteration: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _init_models(cfg: TrainConfig) -> tuple[TransferNet, TransferNet, ArchConfig]:
    arch = cfg.arch
    source = load_checkpoint(cfg.source) if cfg.source else None
    if source is not None:
        src_arch = ArchConfig(**source["arch"])
        if src_arch not in (arch, arch.unconditional):
            raise GansweepError(f"checkpoint {cfg.source}: architecture {src_arch} does not "
                                f"match the requested {arch}")
        if any(t in ("adafm", "filter-shift") for p in source["plans"].values() for t in p):
            raise GansweepError(f"checkpoint {cfg.source}: a modulated run cannot be a "
                                f"transfer source; use a pretrained or fine-tuned one")
    g, d = build_models(arch)
    if source is not None:
        _load_state(g, source["G"], "G", cfg.source)
        _load_state(d, source["D"], "D", cfg.source)
    loss = get_loss(cfg.loss)
    if loss.needs_norm_free_critic and arch.d_norm == "batch":
        raise GansweepError(f"loss: {cfg.loss!r} needs a critic without batch norm; this "
                            f"architecture has d_norm='batch' (use 'layer' or 'none')")
    apply_plan(g, cfg.g_plan or ["finetune"] * g.num_units, cfg.bn_stats)
    apply_plan(d, cfg.d_plan or ["finetune"] * d.num_units, cfg.bn_stats)
    return g, d, arch


def _clippable(net: TransferNet) -> list[torch.nn.Parameter]:
    # WGAN clips D's weights; modulation factors multiply weights that were clipped in
    # pretraining and start at 1, so clipping them would destroy the modulation. An
    # auxiliary classifier is not part of the critic's output and is not clipped either.
    skip = {id(p) for m in net.modules() if isinstance(m, (AdaFM, FilterShift))
            for p in m.parameters()}
    skip |= {id(p) for m in net.modules() if isinstance(m, ClassHead) and m.kind == "ac"
             for p in (m.classifier.weight, m.classifier_bias.weight)}
    return [p for p in trainable_parameters(net) if id(p) not in skip]


def setup(cfg: TrainConfig, resume: str | os.PathLike | None = None) -> TrainState:
    """Build models, optimisers, data and real-data statistics; optionally resume a run."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    g, d, arch = _init_models(cfg)
    g.to(device).train()
    d.to(device).train()
    loss = get_loss(cfg.loss)
    lr = cfg.lr if cfg.lr is not None else loss.lr
    g_params, d_params = trainable_parameters(g), trainable_parameters(d)
    opt_g = loss.optimizer(g_params, lr) if g_params else None
    opt_d = loss.optimizer(d_params, lr) if d_params else None

    # Class sub-folders are read even for an unconditional run: the classifier metric and
    # the reference set then match those of the conditional runs on the same target.
    target = load_folder(cfg.data, arch.resolution,
                         labelled=True if arch.num_classes else None)
    if arch.num_classes and len(target.classes) != arch.num_classes:
        raise GansweepError(f"{cfg.data}: {len(target.classes)} classes {target.classes}, but "
                            f"the networks have arch.num_classes = {arch.num_classes}")
    train_set = target.subset(cfg.target_size, cfg.seed)
    sampler = BatchSampler(len(train_set), cfg.batch_size, cfg.seed, cfg.data)
    reference = reference_set(target, cfg.fid_real)
    real = classifier = None
    if cfg.metrics:
        real = reference_stats(reference, cfg.inception_weights, cfg.cache_dir, device)
    if "classifier" in cfg.metrics:
        classifier = target_classifier(target, cfg.classifier_negatives, cfg.classifier_steps,
                                       cfg.cache_dir, device)
    labels = train_set.labels.to(device) if arch.num_classes else None
    state = TrainState(cfg, device, g, d, opt_g, opt_d, loss, cfg.n_critic or loss.n_critic,
                       parse_augment(cfg.augment), train_set.images.to(device), labels, sampler,
                       reference, real, classifier, _clippable(d))
    if resume is not None:
        restore(state, load_checkpoint(resume))
    return state


def reference_set(target: ImageSet, fid_real: int | None) -> ImageSet:
    """The images generated ones are compared with: the whole target folder (capped at
    ``fid_real`` images), not the training subset, so that runs with different target
    sizes meet the same images."""
    return target.subset(min(fid_real, len(target)) if fid_real else None, 0)


def reference_stats(reference: ImageSet, weights: str | None, cache_dir: str | None,
                    device: torch.device) -> FeatureStats:
    """Real-data statistics for FID/KID, from the cache under ``cache_dir/fid-stats`` when
    present."""
    extractor = get_extractor(resolve_weights(weights), device)
    return real_stats(reference.images, reference.digest(), extractor,
                      Path(cache_dir or default_cache_dir()) / "fid-stats")


def target_classifier(target: ImageSet, negatives: str, steps: int, cache_dir: str | None,
                      device: torch.device) -> TargetClassifier:
    """The classifier metric's network: the target's classes vs the ``negatives`` folder,
    trained once (seed 0 whatever the run's seed: every trial meets the same classifier)
    and cached under ``cache_dir/classifiers``."""
    images = load_folder(negatives, target.images.shape[-1])
    return train_classifier(target, images, steps, seed=0, device=device,
                            cache_dir=Path(cache_dir or default_cache_dir()) / "classifiers")


def _real_batch(s: TrainState) -> tuple[torch.Tensor, torch.Tensor | None]:
    idx = s.sampler.next().to(s.device)
    images = to_float(s.augmentation.real_batch(s.data[idx]))
    return images, None if s.labels is None else s.labels[idx]


def _noise(s: TrainState, n: int) -> torch.Tensor:
    return torch.randn(n, s.G.z_dim, device=s.device)


def _critic(s: TrainState, y: torch.Tensor | None):
    return lambda x: s.D(s.augmentation.critic_input(x), y)


def _with_class_loss(s: TrainState, loss: torch.Tensor, images: torch.Tensor,
                     y: torch.Tensor | None) -> torch.Tensor:
    """``loss`` plus the auxiliary classifier's weighted log-likelihood term (AC head
    only; eq. 7-8 of Wang et al.)."""
    if y is None or s.cfg.arch.cond_head != "ac":
        return loss
    logits = s.D.class_logits(s.augmentation.critic_input(images))
    return loss + s.cfg.ac_weight * torch.nn.functional.cross_entropy(logits, y)


def train_step(s: TrainState) -> dict[str, float]:
    """One generator iteration after n_critic critic iterations; raises on divergence.
    A conditional G is given the classes of the real batch in D's steps (a sample of the
    target's class distribution, as Wang et al. condition on y' ~ p_data(y))."""
    d_loss = torch.zeros((), device=s.device)
    for _ in range(s.n_critic):
        real, y = _real_batch(s)
        with torch.no_grad():
            fake = s.G(_noise(s, real.shape[0]), y)
        d_loss = _with_class_loss(s, s.loss.d_loss(_critic(s, y), real, fake), real, y)
        if s.opt_d is not None:
            s.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            s.opt_d.step()
            s.loss.after_d_step(s.clip_params)
    g_loss = torch.zeros((), device=s.device)
    if s.opt_g is not None:
        # D's parameters need no gradient for the generator update.
        d_params = s.opt_d.param_groups[0]["params"] if s.opt_d is not None else []
        for p in d_params:
            p.requires_grad_(False)
        y = None if s.labels is None else s.labels[
            torch.randint(len(s.labels), (s.cfg.batch_size,), device=s.device)]
        fake = s.G(_noise(s, s.cfg.batch_size), y)
        g_loss = _with_class_loss(s, s.loss.g_loss(_critic(s, y), fake), fake, y)
        s.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        s.opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
    s.iteration += 1
    values = torch.stack([d_loss.detach(), g_loss.detach()]).tolist()
    losses = {"d_loss": values[0], "g_loss": values[1]}
    if not all(math.isfinite(v) for v in values):
        raise DivergenceError(s.iteration, losses)
    s.last_losses = losses
    return losses


def balanced_labels(s: TrainState, n: int) -> torch.Tensor | None:
    """Classes 0, 1, ..., K-1, 0, 1, ... for n images of a conditional G (None if not)."""
    k = s.cfg.arch.num_classes
    return torch.arange(n) % k if k else None


@torch.no_grad()
def generate(s: TrainState, n: int, seed: int,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images from G in eval mode, from noise fixed by ``seed`` (and, for a conditional
    G, of classes ``labels``), as uint8 (as PNGs hold)."""
    gen = torch.Generator().manual_seed(seed)
    chunks = torch.arange(n).split(256)
    s.G.eval()
    try:
        out = [quantize(s.G(torch.randn(len(i), s.G.z_dim, generator=gen).to(s.device),
                            None if labels is None else labels[i].to(s.device)).cpu())
               for i in chunks]
    finally:
        s.G.train()
    return torch.cat(out)


def images_per_s(s: TrainState) -> float:
    """Real images through D per second of training (evaluation excluded)."""
    seen = s.iteration * s.n_critic * s.cfg.batch_size
    return seen / s.train_seconds if s.train_seconds > 0 else 0.0


def evaluate(s: TrainState) -> dict[str, float]:
    """Metrics on fid_samples generated images, a sample grid, and the history record."""
    record: dict[str, float] = {"iteration": s.iteration, **s.last_losses,
                                "images_per_s": images_per_s(s),
                                "train_seconds": s.train_seconds}
    if s.real is not None:
        labels = balanced_labels(s, s.cfg.fid_samples)
        fake = generate(s, s.cfg.fid_samples, seed=s.cfg.seed + 10_000, labels=labels)
        extractor = get_extractor(resolve_weights(s.cfg.inception_weights), s.device)
        evaluation = Evaluation(s.real, FeatureStats(extractor(fake)), s.reference.images, fake,
                                labels, s.classifier, s.cfg.iw_steps, s.cfg.seed, s.device)
        record.update(compute_metrics(evaluation, s.cfg.metrics))
        if labels is not None and "fid" in s.cfg.metrics:
            record["class_fid"] = per_class_fid(s.real, s.reference.labels, evaluation.fake,
                                                labels, s.reference.classes)
    grid = generate(s, 64, seed=s.cfg.seed + 20_000, labels=balanced_labels(s, 64))
    (s.out / "samples").mkdir(parents=True, exist_ok=True)
    save_image(grid.float() / 255, s.out / "samples" / f"iter_{s.iteration:07d}.png", nrow=8)
    s.history.append(record)
    return record


def state_dict(s: TrainState) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": s.cfg.arch.to_dict(),
        "plans": {"g": list(s.cfg.g_plan or ["finetune"] * s.G.num_units),
                  "d": list(s.cfg.d_plan or ["finetune"] * s.D.num_units)},
        "config": s.cfg.to_dict(),
        "G": s.G.state_dict(), "D": s.D.state_dict(),
        "opt_g": s.opt_g.state_dict() if s.opt_g else None,
        "opt_d": s.opt_d.state_dict() if s.opt_d else None,
        "iteration": s.iteration, "train_seconds": s.train_seconds,
        "history": s.history, "last_losses": s.last_losses,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if s.device.type == "cuda" else [],
                "sampler": s.sampler.state_dict()},
    }


def restore(s: TrainState, ckpt: dict[str, Any]) -> None:
    """Continue a run from its checkpoint, bit for bit (same device type)."""
    s.G.load_state_dict(ckpt["G"])
    s.D.load_state_dict(ckpt["D"])
    for opt, key in ((s.opt_g, "opt_g"), (s.opt_d, "opt_d")):
        if opt is not None:
            opt.load_state_dict(ckpt[key])
    s.iteration, s.train_seconds = ckpt["iteration"], ckpt["train_seconds"]
    s.history, s.last_losses = list(ckpt["history"]), dict(ckpt["last_losses"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if s.device.type == "cuda" and ckpt["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    s.sampler.load_state_dict(ckpt["rng"]["sampler"])


def snapshot(s: TrainState, path: str | os.PathLike | None = None) -> Path:
    """Write the resumable checkpoint (atomically) and the run's config and metrics."""
    path = Path(path) if path else s.out / "checkpoint.pt"
    atomic_write(path, lambda f: torch.save(state_dict(s), f))
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "config.json").write_text(json.dumps(s.cfg.to_dict(), indent=2))
    with open(s.out / "metrics.jsonl", "w") as f:
        for record in s.history:
            f.write(json.dumps(record) + "\n")
    return path


Callback = Callable[[TrainState, dict[str, float]], bool | None]


def train(cfg: TrainConfig, callback: Callback | None = None,
          resume: str | os.PathLike | None = None, state: TrainState | None = None,
          save: bool = True) -> TrainState:
    """Run to ``cfg.iters``; evaluate + snapshot (unless ``save`` is False: the caller's
    callback checkpoints) + callback every ``eval_every`` iterations and at the end. The
    callback returns True to stop early."""
    s = state or setup(cfg, resume)
    s.out.mkdir(parents=True, exist_ok=True)
    every = cfg.eval_every or cfg.iters
    while s.iteration < cfg.iters:
        t0 = time.perf_counter()
        train_step(s)  # ends with a host sync (the loss check), so the timing is honest
        s.train_seconds += time.perf_counter() - t0
        if s.iteration % every == 0 or s.iteration == cfg.iters:
            record = evaluate(s)
            if save:
                snapshot(s)
            if callback is not None and callback(s, record):
                break
    return s


def final_summary(s: TrainState) -> dict[str, Any]:
    """The one-line result of a run: its last metrics, iterations and costs."""
    last = s.history[-1] if s.history else {}
    return {"label": s.cfg.label,
            **{m: last.get(m) for m in s.cfg.metrics},
            "iterations": s.iteration,
            "trainable_g": count_trainable(s.G), "trainable_d": count_trainable(s.D),
            "images_per_s": round(images_per_s(s), 2),
            "train_seconds": round(s.train_seconds, 2)}


def transfer_config(source: str, data: str, out: str, *, d: str | None = None,
                    g: str | None = None, baseline: str | None = None,
                    modulation: str = "adafm", freeze_d_depth: int | None = None,
                    g_init: str = "pretrained", d_init: str = "pretrained",
                    plans: tuple[Sequence[str], Sequence[str]] | None = None,
                    conditional: str | None = None, expect_arch: str | None = None,
                    expect_resolution: int | None = None,
                    **overrides: Any) -> TrainConfig:
    """The config of one transfer trial: a D/G partition pair, a baseline preset, or
    explicit per-unit ``plans`` (G's, D's), from a source checkpoint. ``g_init``/``d_init =
    scratch`` re-initialises that whole network (Wang et al.'s G/D initialisation study);
    it needs that network fully fine-tuned. ``conditional`` (a class head: projection or ac)
    makes both networks class-conditional, one class per sub-folder of ``data``; the source
    may be unconditional (Wang et al. section 5).
    Settings not given (loss, ...) default to the source's pretraining config, and the
    classifier metric's negatives to the source's training images.
    ``expect_arch``/``expect_resolution`` refuse a source of another architecture."""
    ckpt = load_checkpoint(source)
    arch = ArchConfig(**ckpt["arch"])
    for what, want, have in (("architecture", expect_arch, arch.name),
                             ("resolution", expect_resolution, arch.resolution)):
        if want is not None and want != have:
            raise GansweepError(f"checkpoint {source}: {what} is {have!r}, expected {want!r}")
    lg, ld = unit_counts(arch)
    if modulation not in ("adafm", "filter-shift"):
        raise GansweepError(f"modulation: {modulation!r} is not 'adafm' or 'filter-shift'")
    given = [x for x in (baseline, d or g, plans) if x is not None]
    if len(given) != 1:
        raise GansweepError("give one of: a baseline, D/G partitions, or per-unit plans")
    if baseline is not None:
        pair = baseline_pair(baseline, ld, lg, modulation, freeze_d_depth)
    elif plans is not None:
        pair = PlanPair(check_plan(plans[0], lg, "g_plan"), check_plan(plans[1], ld, "d_plan"),
                        plans_label(plans))
    elif d is None or g is None:
        raise GansweepError("give both a D partition and a G partition, or a baseline")
    else:
        pair = partition_pair(parse_partition(d, ld, "D"), parse_partition(g, lg, "G"),
                              modulation)
    plans = {"g": list(pair.g_plan), "d": list(pair.d_plan)}
    for net, init in (("g", g_init), ("d", d_init)):
        if init not in INITS:
            raise GansweepError(f"{net}_init: {init!r} is not one of {INITS}")
        if init == "scratch":
            if any(t not in ("finetune", "reinit") for t in plans[net]):
                raise GansweepError(f"{net}_init: 'scratch' needs {net.upper()} fully "
                                    f"fine-tuned, but {pair.label} freezes or modulates it")
            plans[net] = ["reinit"] * len(plans[net])
    if conditional is not None:
        if conditional not in COND_HEADS:
            raise GansweepError(f"conditional: {conditional!r} is not one of {COND_HEADS}")
        arch = replace(arch, num_classes=len(class_names(data)), cond_head=conditional)
    overrides.setdefault("loss", ckpt["config"]["loss"])
    if "classifier" in overrides.get("metrics", ()) and \
            overrides.get("classifier_negatives") is None:
        overrides["classifier_negatives"] = str(Path(ckpt["config"]["data"]).resolve())
    return TrainConfig(data=data, out=out, arch=arch, source=source, g_plan=plans["g"],
                       d_plan=plans["d"], label=pair.label, **overrides)
