"""Checkpoints: one file that resumes a run bit for bit and that serves as a transfer source.

A checkpoint holds the architecture, the per-unit plans, the full config that made it, G and
D (and the EMA generator when the run keeps one), the optimiser and RNG states, and the
evaluation history. It is read by core.torch_files (sizes checked against the file, then
``torch.load(weights_only=True)``): tensors and plain data only; every field a resume uses
is checked before it is used (core.checkpoint_fields).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gansweep.core.checkpoint_fields import (
    check_run_fields,
    load_net,
    load_optimizer,
    load_rng,
    state_dict,
)
from gansweep.core.config import TrainConfig
from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write, file_sha256
from gansweep.core.models import ArchConfig, TransferNet, cross_resolution, load_source_state
from gansweep.core.pickle_parts import first_line, quote
from gansweep.core.torch_files import load_torch_file
from gansweep.core.treatments import TREATMENTS

if TYPE_CHECKING:
    from gansweep.core.train import TrainState

CHECKPOINT_FORMAT = "gansweep-checkpoint/1"


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """Load and validate a gansweep checkpoint (tensors and plain data only: weights_only).
    ``mmap``: tensors stay on disk until read (to read the metadata of a large one)."""
    ckpt = load_torch_file(path, "gansweep checkpoint", mmap=mmap)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GansweepError(f"checkpoint {path}: not a gansweep checkpoint (no "
                            f"'{CHECKPOINT_FORMAT}' format marker)")
    for key in ("arch", "G", "D", "plans", "config"):
        if key not in ckpt:
            name = {"G": "the generator G", "D": "the discriminator D"}.get(key, f"'{key}'")
            raise GansweepError(f"checkpoint {path}: missing {name}")
    _check_fields(ckpt, path)
    return ckpt


def _check_fields(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """The fields every reader of a checkpoint relies on, of the types they expect (a file
    from outside can hold anything a weights_only load allows)."""
    def bad(what: str) -> GansweepError:
        return GansweepError(f"checkpoint {path}: {what[:300]}")

    for key in ("G", "D"):
        if not state_dict(ckpt[key]):
            raise bad(f"its {key} is not a state dict of tensors")
    plans, config = ckpt["plans"], ckpt["config"]
    if not isinstance(plans, dict) or set(plans) != {"g", "d"} or not all(
            isinstance(p, list) and all(isinstance(t, str) for t in p) for p in plans.values()):
        raise bad("its plans are not lists of treatment names for g and d")
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config) or \
            not isinstance(ckpt["arch"], dict):
        raise bad("its config or arch is not a dict of fields")
    if not isinstance(config.get("loss"), str) or not isinstance(config.get("data"),
                                                                 (str, type(None))):
        raise bad("its config has no loss name or data folder")
    try:
        ArchConfig(**ckpt["arch"])
        if "out" in config:  # a run's (an imported source's holds its loss and origin only)
            TrainConfig.from_dict(config)
    except GansweepError as e:
        raise bad(str(e)) from None
    except (TypeError, ValueError) as e:  # a field missing, unknown or of the wrong type
        raise bad(f"its arch or config does not describe a run ({type(e).__name__}: "
                  f"{first_line(e, 120)})") from None
    if "out" in config:  # what resumes the run, checked before restore and snapshot use it
        check_run_fields(ckpt, bad)


@dataclass(frozen=True)
class SourceInfo:
    """What a transfer needs to know of its source before it loads the weights."""

    path: str
    arch: ArchConfig
    loss: str  # its pretraining loss: a transfer's default
    data: str | None  # the folder it was trained on (absolute; None: imported)
    modulated: bool  # made by a modulating treatment: not a transfer source

    @classmethod
    def of(cls, path: str, ckpt: dict[str, Any]) -> SourceInfo:
        data = ckpt["config"]["data"]
        return cls(str(path), ArchConfig(**ckpt["arch"]), ckpt["config"]["loss"],
                   None if data is None else str(Path(data).resolve()),
                   any(TREATMENTS.get(t).modulates for p in ckpt["plans"].values() for t in p))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arch": self.arch.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceInfo:
        return cls(**{**data, "arch": ArchConfig(**data["arch"])})


def read_source(path: str | os.PathLike) -> SourceInfo:
    """A source checkpoint's metadata, without reading its tensors."""
    return SourceInfo.of(str(path), load_checkpoint(path, mmap=True))


def check_source(info: SourceInfo, arch: ArchConfig, new_units: list[str]) -> None:
    """A run of ``arch`` (with the units a lower resolution adds) can start from the source."""
    expected = cross_resolution(info.arch, arch.resolution)[0] if new_units else info.arch
    if expected not in (arch, arch.unconditional):
        raise GansweepError(f"checkpoint {info.path}: architecture {info.arch} does not match "
                            f"the requested {arch}")
    if info.modulated:
        raise GansweepError(f"checkpoint {info.path}: a modulated run cannot be a transfer "
                            f"source; use a pretrained or fine-tuned one")


def load_source(net: TransferNet, state: dict, what: str, path: str) -> None:
    """Load a source checkpoint's G or D into ``net``; a mismatch names the file."""
    try:
        load_source_state(net, state)
    except RuntimeError as e:
        raise GansweepError(f"checkpoint {path}: {what} does not fit the architecture "
                            f"({str(e).splitlines()[0][:160]})") from None


def _trainable_and_buffers(net: nn.Module) -> set[str]:
    return {n for n, p in net.named_parameters() if p.requires_grad} | \
        {n for n, _ in net.named_buffers()}


def checkpoint_state(s: TrainState, lean: bool = False) -> dict[str, Any]:
    """Everything that resumes the run ``s``. ``lean``: G's and D's frozen tensors are left
    out (a transfer's frozen weights are its source's; ``restore`` reloads them from there,
    checking the source's sha256), so a mostly frozen or modulated trial writes little; a
    lean checkpoint resumes its run but is no transfer source itself."""
    g, d = s.G.state_dict(), s.D.state_dict()
    ema = s.ema.state_dict() if s.ema is not None else None
    lean = lean and s.cfg.source is not None
    if lean:
        keep_g, keep_d = _trainable_and_buffers(s.G), _trainable_and_buffers(s.D)
        g, d = ({k: v for k, v in g.items() if k in keep_g},
                {k: v for k, v in d.items() if k in keep_d})
        ema = None if ema is None else {k: v for k, v in ema.items() if k in keep_g}
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": s.cfg.arch.to_dict(),
        "plans": {"g": list(s.cfg.g_plan or ["finetune"] * s.G.num_units),
                  "d": list(s.cfg.d_plan or ["finetune"] * s.D.num_units)},
        "config": s.cfg.to_dict(),
        "lean": lean,
        "source": None if s.cfg.source is None else {"path": s.cfg.source,
                                                     "sha256": file_sha256(s.cfg.source)},
        "G": g, "D": d, "G_ema": ema,
        "opt_g": s.opt_g.state_dict() if s.opt_g else None,
        "opt_d": s.opt_d.state_dict() if s.opt_d else None,
        "iteration": s.iteration, "train_seconds": s.train_seconds,
        "history": s.history, "last_losses": s.last_losses, "numerics": s.numerics,
        "loss": s.loss.state_dict(),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if s.device.type == "cuda" else [],
                "sampler": s.sampler.state_dict()},
    }


def require_run(ckpt: dict[str, Any], where: str) -> None:
    """A checkpoint of a run gansweep trained (its run fields checked on reading), not an
    imported source, which holds networks and their origin only."""
    if "out" not in ckpt["config"]:
        raise GansweepError(f"{where}: an imported source, not a run gansweep trained: "
                            f"transfer or pretrain from it, then resume or sample that")


def restore(s: TrainState, ckpt: dict[str, Any]) -> None:
    """Continue a run from its checkpoint: bit for bit on the same device type (on a GPU,
    with ``deterministic``); on another device type it continues and says so."""
    require_run(ckpt, "checkpoint")  # a source's run fields were never checked: it has none
    if ArchConfig(**ckpt["arch"]) != s.cfg.arch:
        ours = s.cfg.arch.to_dict()
        differ = {k: v for k, v in ArchConfig(**ckpt["arch"]).to_dict().items() if ours[k] != v}
        raise GansweepError(f"checkpoint: made for other networks than this run's (it has "
                            f"arch {differ}); resume a run with the options it was started "
                            f"with")
    numerics = ckpt.get("numerics", {})
    written_on = numerics.get("device", "cpu")
    if torch.device(written_on).type != s.device.type:
        print(f"gansweep: warning: the checkpoint was written on {quote(written_on)} "
              f"({quote(numerics.get('device_name'))}); resuming on {s.device}: the run "
              f"continues, but not bit for bit", file=sys.stderr)
    lean = ckpt.get("lean", False)
    if lean:
        # The frozen tensors are the source's, loaded by setup: the source must not change.
        if s.cfg.source is None:
            raise GansweepError("checkpoint: lean (its frozen tensors are its source's), but "
                                "this run has no source")
        recorded, now = ckpt["source"]["sha256"], file_sha256(s.cfg.source)
        if recorded != now:
            raise GansweepError(f"checkpoint: the run's source {s.cfg.source} changed since "
                                f"the run started (sha256 {recorded[:12]}... then, "
                                f"{now[:12]}... now); its frozen weights cannot be restored")
    trainable_g = _trainable_and_buffers(s.G) if lean else None
    load_net(s.G, ckpt["G"], trainable_g, "G")
    load_net(s.D, ckpt["D"], _trainable_and_buffers(s.D) if lean else None, "D")
    if s.ema is not None:
        if ckpt.get("G_ema") is None:
            raise GansweepError("checkpoint: this run evaluates an EMA generator, but the "
                                "checkpoint it resumes from has none (made with ema off)")
        load_net(s.ema.net, ckpt["G_ema"], trainable_g, "G_ema")
    for opt, key, net in ((s.opt_g, "opt_g", "G"), (s.opt_d, "opt_d", "D")):
        if opt is not None:
            if ckpt.get(key) is None:
                raise GansweepError(f"checkpoint: holds no optimiser state for {net}, which "
                                    f"this run trains")
            load_optimizer(opt, ckpt[key], net)
    s.iteration, s.train_seconds = ckpt["iteration"], ckpt["train_seconds"]
    s.history, s.last_losses = list(ckpt["history"]), dict(ckpt["last_losses"])
    if "loss" in ckpt:  # written since the stylegan2 loss (a path-length running mean)
        if set(ckpt["loss"]) != set(s.loss.state_dict()):
            raise GansweepError(f"checkpoint: its loss state names {sorted(ckpt['loss'])[:4]}; "
                                f"this run's loss keeps {sorted(s.loss.state_dict())}")
        s.loss.load_state_dict(ckpt["loss"])
    load_rng(ckpt["rng"], s.sampler, s.device.type == "cuda")


def snapshot(s: TrainState, path: str | os.PathLike | None = None, lean: bool = False) -> Path:
    """Write the resumable checkpoint (atomically) and the run's config and metrics."""
    path = Path(path) if path else s.out / "checkpoint.pt"
    atomic_write(path, lambda f: torch.save(checkpoint_state(s, lean), f))
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "config.json").write_text(json.dumps(s.cfg.to_dict(), indent=2))
    with open(s.out / "metrics.jsonl", "w") as f:
        for record in s.history:
            f.write(json.dumps(record) + "\n")
    return path
