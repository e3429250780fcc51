"""Checkpoints: one file that resumes a run bit for bit and that serves as a transfer source.

A checkpoint holds the architecture, the per-unit plans, the full config that made it, G and
D (and the EMA generator when the run keeps one), the optimiser and RNG states, and the
evaluation history. It is read with ``torch.load(weights_only=True)``: tensors and plain data
only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.models import TransferNet, load_source_state

if TYPE_CHECKING:
    from gansweep.core.train import TrainState

CHECKPOINT_FORMAT = "gansweep-checkpoint/1"


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


def load_source(net: TransferNet, state: dict, what: str, path: str) -> None:
    """Load a source checkpoint's G or D into ``net``; a mismatch names the file."""
    try:
        load_source_state(net, state)
    except RuntimeError as e:
        raise GansweepError(f"checkpoint {path}: {what} does not fit the architecture "
                            f"({str(e).splitlines()[0][:160]})") from None


def checkpoint_state(s: TrainState) -> dict[str, Any]:
    """Everything that resumes the run ``s``."""
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": s.cfg.arch.to_dict(),
        "plans": {"g": list(s.cfg.g_plan or ["finetune"] * s.G.num_units),
                  "d": list(s.cfg.d_plan or ["finetune"] * s.D.num_units)},
        "config": s.cfg.to_dict(),
        "G": s.G.state_dict(), "D": s.D.state_dict(),
        "G_ema": s.ema.state_dict() if s.ema is not None else None,
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
    if s.ema is not None:
        if ckpt.get("G_ema") is None:
            raise GansweepError("checkpoint: this run evaluates an EMA generator, but the "
                                "checkpoint it resumes from has none (made with ema off)")
        s.ema.load_state_dict(ckpt["G_ema"])
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
    atomic_write(path, lambda f: torch.save(checkpoint_state(s), f))
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "config.json").write_text(json.dumps(s.cfg.to_dict(), indent=2))
    with open(s.out / "metrics.jsonl", "w") as f:
        for record in s.history:
            f.write(json.dumps(record) + "\n")
    return path
