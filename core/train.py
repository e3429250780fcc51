"""The one training loop: pretraining, every transfer treatment and every baseline.

``train(cfg)`` = ``setup`` -> repeat ``train_step`` -> every ``eval_every`` iterations (and
at iteration 0 with ``eval_at_start``) ``evaluate`` + ``snapshot`` + the caller's callback
(the sweep reports to Ray Tune there).
An iteration is one generator update after ``n_critic`` critic updates. The configuration is
``core.config``, checkpoints ``core.checkpoint``, evaluation ``core.evaluate``, the EMA
generator ``core.ema``.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gansweep.core.augment import Augmentation, parse_augment
from gansweep.core.checkpoint import (
    SourceInfo,
    check_source,
    load_checkpoint,
    load_source,
    restore,
    snapshot,
)
from gansweep.core.config import TrainConfig
from gansweep.core.critics import TargetClassifier
from gansweep.core.data import BatchSampler, ImageSet, load_folder, to_float
from gansweep.core.ema import EMA
from gansweep.core.errors import DivergenceError, GansweepError
from gansweep.core.evaluate import (
    evaluate,
    images_per_s,
    reference_set,
    reference_stats,
    target_classifier,
)
from gansweep.core.features import FeatureStats
from gansweep.core.losses import LOSSES, Loss, get_loss
from gansweep.core.models import (
    ArchConfig,
    ClassHead,
    FilterShift,
    TransferNet,
    build_models,
)
from gansweep.core.numerics import numerics_record, pick_device, set_training_numerics
from gansweep.core.progress import Progress
from gansweep.core.treatments import (
    AdaFM,
    apply_plan,
    count_trainable,
    param_groups,
    trainable_parameters,
)

# Iterations between read-backs of the losses (the divergence check, the losses logged
# and shown): each read-back waits for the GPU to finish the queued steps.
READ_EVERY = 16


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
    ema: EMA | None  # the averaged G that evaluation uses (None: G itself)
    numerics: dict[str, Any]  # what it computes on (core.numerics.numerics_record)
    iteration: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)
    # (iteration, [d_loss, g_loss]) on the device of each step since the losses were last
    # read back (``read_losses``): reading them every step would wait for the GPU each step.
    pending: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def _init_models(cfg: TrainConfig) -> tuple[TransferNet, TransferNet, ArchConfig]:
    arch = cfg.arch
    source = load_checkpoint(cfg.source) if cfg.source else None
    if source is not None:
        check_source(SourceInfo.of(cfg.source, source), arch, cfg.new_units)
    g, d = build_models(arch)
    if source is not None:
        for net, module in (("G", g), ("D", d)):
            state = source[net]
            if cfg.new_units:  # the source's tensors of the units kept; new units as built
                new = tuple(f"units.{u.split('.', 1)[1]}." for u in cfg.new_units
                            if u[0] == net)
                state = {k: v if k.startswith(new) else state[k]
                         for k, v in module.state_dict().items()}
            load_source(module, state, net, cfg.source)
    loss = LOSSES.get(cfg.loss)
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
    set_training_numerics(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    g, d, arch = _init_models(cfg)
    g.to(device).train()
    d.to(device).train()
    loss = get_loss(cfg.loss, cfg.label_smoothing, cfg.label_noise, cfg.r1_gamma,
                    cfg.path_length)
    lr = cfg.lr if cfg.lr is not None else loss.lr
    g_groups = param_groups(g, cfg.g_plan or ["finetune"] * g.num_units, lr, cfg.lr_mult)
    d_groups = param_groups(d, cfg.d_plan or ["finetune"] * d.num_units, lr, cfg.lr_mult)
    opt_g = loss.optimizer(g_groups, lr, "G") if g_groups else None
    opt_d = loss.optimizer(d_groups, lr, "D") if d_groups else None

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
        real = reference_stats(reference, cfg.inception_weights, cfg.cache_dir, device,
                               cfg.metrics)
    if "classifier" in cfg.metrics:
        classifier = target_classifier(target, cfg.classifier_negatives, cfg.classifier_steps,
                                       cfg.cache_dir, device)
    labels = train_set.labels.to(device) if arch.num_classes else None
    state = TrainState(cfg, device, g, d, opt_g, opt_d, loss, cfg.n_critic or loss.n_critic,
                       parse_augment(cfg.augment), train_set.images.to(device), labels, sampler,
                       reference, real, classifier, _clippable(d),
                       EMA(g, cfg.ema_kimg, cfg.ema_rampup, cfg.batch_size)
                       if cfg.ema_kimg is not None else None, numerics_record(device))
    if cfg.compile:  # after the EMA's copy of G, which is evaluated uncompiled
        capture(state)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        try:
            restore(state, ckpt)
        except GansweepError as e:  # what only this run can find wrong: name the file
            raise GansweepError(f"{resume}: {e}") from None
    return state


def capture(s: TrainState) -> None:
    """Compile G's and D's forward (and so their backward) in place, keeping their modules
    and state-dict keys: CUDA graphs (reduce-overhead) on a GPU, where a small GAN's step
    is bound by kernel launches; inductor's default mode on a CPU."""
    mode = "reduce-overhead" if s.device.type == "cuda" else None
    for net in (s.G, s.D):
        net.compile(mode=mode)



def _real_batch(s: TrainState) -> tuple[torch.Tensor, torch.Tensor | None]:
    # non_blocking: a blocking copy to a GPU waits for the GPU's queue to drain
    idx = s.sampler.next().to(s.device, non_blocking=True)
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


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_step(s: TrainState) -> dict[str, float] | None:
    """One generator iteration after n_critic critic iterations. Its losses stay on the
    device; at the first iteration and every ``READ_EVERY`` they are read back
    (``read_losses``: raises on divergence) and returned, else None is. A conditional G is
    given the classes of the real batch in D's steps (a sample of the target's class
    distribution, as Wang et al. condition on y' ~ p_data(y))."""
    d_loss = torch.zeros((), device=s.device)
    for _ in range(s.n_critic):
        real, y = _real_batch(s)
        with torch.no_grad():
            fake = s.G(_noise(s, real.shape[0]), y)
        d_loss = _with_class_loss(s, s.loss.d_loss(_critic(s, y), real, fake), real, y)
        if s.opt_d is not None:
            _update(s.opt_d, d_loss)
            s.loss.after_d_step(s.clip_params)
            penalty = s.loss.d_penalty(_critic(s, y), real, s.iteration)
            if penalty is not None:  # lazy regularisation: its own step
                _update(s.opt_d, penalty)
    g_loss = torch.zeros((), device=s.device)
    if s.opt_g is not None:
        # D's parameters need no gradient for the generator update.
        d_params = [p for group in s.opt_d.param_groups for p in group["params"]] \
            if s.opt_d is not None else []
        for p in d_params:
            p.requires_grad_(False)
        y = None if s.labels is None else s.labels[
            torch.randint(len(s.labels), (s.cfg.batch_size,), device=s.device)]
        fake = s.G(_noise(s, s.cfg.batch_size), y)
        g_loss = _with_class_loss(s, s.loss.g_loss(_critic(s, y), fake), fake, y)
        _update(s.opt_g, g_loss)
        penalty = s.loss.g_penalty(s.G, lambda n: _noise(s, n), s.cfg.batch_size, s.iteration)
        if penalty is not None:  # lazy regularisation: its own step
            _update(s.opt_g, penalty)
        for p in d_params:
            p.requires_grad_(True)
    s.iteration += 1
    if s.ema is not None:
        s.ema.update(s.iteration * s.cfg.batch_size)
    s.pending.append((s.iteration, torch.stack([d_loss.detach(), g_loss.detach()])))
    if s.iteration == 1 or s.iteration % READ_EVERY == 0:
        return read_losses(s)
    return None


def read_losses(s: TrainState) -> dict[str, float]:
    """The losses of the steps not yet read, read back with one host synchronisation: raises
    ``DivergenceError`` at the first non-finite one (its iteration), else sets and returns
    ``last_losses`` (the latest step's)."""
    if s.pending:
        iterations = [i for i, _ in s.pending]
        rows = torch.stack([v for _, v in s.pending]).tolist()
        s.pending.clear()
        for iteration, (d, g) in zip(iterations, rows):
            if not (math.isfinite(d) and math.isfinite(g)):
                raise DivergenceError(iteration, {"d_loss": d, "g_loss": g})
        s.last_losses = {"d_loss": rows[-1][0], "g_loss": rows[-1][1]}
    return s.last_losses



Callback = Callable[[TrainState, dict[str, float]], bool | None]


def train(cfg: TrainConfig, callback: Callback | None = None,
          resume: str | os.PathLike | None = None, state: TrainState | None = None,
          save: bool = True, progress: Progress | None = None) -> TrainState:
    """Run to ``cfg.iters``; evaluate + snapshot (unless ``save`` is False: the caller's
    callback checkpoints) + callback every ``eval_every`` iterations and at the end. The
    callback returns True to stop early. ``progress`` is told every iteration (with the
    losses where they were read back: ``READ_EVERY``) and every evaluation (with the
    metrics)."""
    s = state or setup(cfg, resume)
    s.out.mkdir(parents=True, exist_ok=True)
    every = cfg.eval_every or cfg.iters

    def evaluate_and_report() -> bool:
        record = evaluate(s)
        if save:
            snapshot(s)
        if progress is not None:
            progress.milestone(**{m: record.get(m) for m in cfg.metrics})
        return callback is not None and bool(callback(s, record))

    if cfg.eval_at_start and s.iteration == 0 and not s.history and evaluate_and_report():
        return s
    while s.iteration < cfg.iters:
        t0 = time.perf_counter()
        losses = train_step(s)
        due = s.iteration % every == 0 or s.iteration == cfg.iters
        if due:  # evaluation records the losses; reading them waits for the device
            losses = read_losses(s)
        # Only steps that read back wait for the device, so a step's own time is not its
        # cost; the sum up to a read-back is, and every evaluation follows one.
        s.train_seconds += time.perf_counter() - t0
        if progress is not None:
            progress.update(1, **(losses or {}))
        if due and evaluate_and_report():
            break
    read_losses(s)
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


