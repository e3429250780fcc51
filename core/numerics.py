"""The numerics policy: which device a run uses, and where TF32, cuDNN autotuning and
determinism are set, and why.

- **FID's Inception** always runs in float32 with TF32 off (``fp32_features``): FID and KID
  must be comparable between trials that ran on different GPU generations and on CPUs, and
  TF32 convolutions move Inception's features. Cached real-data statistics are keyed by the
  weights and this precision, not by the device or memory layout (channels_last on CPU
  changes FID by < 1e-7 relative: benchmarks/RESULTS.md section 3).
- **Training**, by default, lets cuDNN autotune its convolution algorithms
  (``cudnn.benchmark``: the shapes of a GAN step never change, so the search pays off) and
  keeps PyTorch's TF32 defaults (convolutions may use TF32, matmuls do not): fast, and
  bit-for-bit repeatable on a CPU but not on a GPU.
- ``deterministic: true`` (a spec key; ``TrainConfig.deterministic``) trades speed for
  repeatability on GPUs: deterministic algorithms only (an error where none exists), no
  autotuning, no TF32, and cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``). A run
  resumed from its checkpoint then continues bit for bit on the same GPU model too.

Every checkpoint and every reported result records what the run used (``numerics_record``).

Randomness: a run's CPU and GPU streams are seeded once, in ``core.train.setup``, and only
training draws from them. Everything else (evaluation noise, the IW critic, the classifier,
and building the per-process cached Inception and LPIPS, whose default initialisation would
draw) uses a seeded generator or ``own_rng``, so a trial's numbers do not depend on what its
worker process ran before it (Tune reuses workers) nor on when it evaluates.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch


def pick_device(name: str) -> torch.device:
    """``auto``: the first visible GPU if any, else the CPU; or the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_training_numerics(deterministic: bool) -> None:
    """Apply the training policy for this process (set every time: a reused worker may have
    run a trial with the other setting)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = False


def own_rng(device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """A random stream of our own for the duration, leaving the training run's CPU stream
    (and ``device``'s, on a GPU) as they were."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


@contextlib.contextmanager
def fp32_features() -> Iterator[None]:
    """TF32 off for the duration (FID's feature extraction), restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def numerics_record(device: torch.device) -> dict[str, Any]:
    """What a run computed on, for checkpoints, results and the Parquet tables."""
    cuda = device.type == "cuda"
    return {"device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "tf32": bool(cuda and torch.backends.cudnn.allow_tf32),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
