"""The training loop never waits for the device per step: the losses (divergence check,
logged values, progress) are read back every ``READ_EVERY`` iterations, for every
registered architecture with its usual loss, EMA and lazy regularisers."""
from __future__ import annotations

import sys

import pytest
import torch

from gansweep.core import train as train_module
from gansweep.core.config import TrainConfig
from gansweep.core.models import ARCHITECTURES, ArchConfig
from gansweep.core.progress import Progress
from gansweep.core.train import READ_EVERY, setup, train

# What makes the host wait for the device (on a GPU): reading a tensor's values.
TENSOR_SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")

# Every registered architecture, tiny, with the loss it is pretrained with (and what that
# loss adds: wgan's clipping, wgan-gp's double backward, R1 and path length, dropout); one
# critic step per iteration but for dcgan's (the critic loop), to keep the test short.
CASES = {
    "dcgan": (ArchConfig("dcgan", 32, 8, 16, "batch"), {"loss": "wgan"}),
    "dcgan-price": (ArchConfig("dcgan-price", 32, 8, 16, "batch"), {"loss": "bce"}),
    "resnet": (ArchConfig("resnet", 32, 4, 16, "layer"), {"loss": "wgan-gp", "n_critic": 1}),
    "sngan": (ArchConfig("sngan", 32, 8, 16), {"loss": "hinge", "n_critic": 1}),
    "stylegan2": (ArchConfig("stylegan2", 32, 8, 16, mapping_layers=2),
                  {"loss": "stylegan2", "path_length": 2.0, "augment": "diffaug"}),
}
ITERS = 50


def test_every_architecture_is_counted():
    assert sorted(CASES) == sorted(ARCHITECTURES.names())


class SyncCounter:
    """Counts reads of tensor values made outside torch itself. Torch's optimisers read
    their step counts with ``.item()``, but those live on the CPU (not ``capturable``), so
    they do not wait for a GPU; every other caller's read would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[str] = []
        for name in TENSOR_SYNCS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))
        monkeypatch.setattr(torch.cuda, "synchronize", self._wrap("synchronize",
                                                                  torch.cuda.synchronize, True))

    def _wrap(self, name: str, original, always: bool = False):
        def counted(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if always or not caller.startswith("torch"):
                self.calls.append(f"{name} from {caller}")
            return original(*args, **kwargs)
        return counted


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_loop_reads_back_once_per_read_every_steps(name, faces, tmp_path, monkeypatch,
                                                        one_thread):
    arch, options = CASES[name]
    cfg = TrainConfig(data=str(faces), out=str(tmp_path), arch=arch, batch_size=4,
                      iters=ITERS, metrics=[], ema_kimg=0.1, **options)
    state = setup(cfg)
    # Evaluation (the end's) reads images back by design; what is counted is the steps.
    monkeypatch.setattr(train_module, "evaluate", lambda s: {"iteration": s.iteration})
    counter = SyncCounter(monkeypatch)
    train(cfg, state=state, save=False, progress=Progress(ITERS, "it", name, quiet=True))
    monkeypatch.undo()
    assert state.iteration == ITERS and set(state.last_losses) == {"d_loss", "g_loss"}
    # One read at the first iteration (a broken start fails at once), one every READ_EVERY,
    # one before the evaluation at the end.
    allowed = 2 + ITERS // READ_EVERY
    assert 1 <= len(counter.calls) <= allowed, counter.calls


def test_the_counter_sees_a_per_step_read(faces, tmp_path, monkeypatch, one_thread):
    """The counter itself: a loop that reads its loss every step is caught."""
    arch, options = CASES["dcgan"]
    cfg = TrainConfig(data=str(faces), out=str(tmp_path), arch=arch, batch_size=4, iters=4,
                      metrics=[], n_critic=1, **options)
    state = setup(cfg)
    counter = SyncCounter(monkeypatch)
    for _ in range(4):  # the loop as it was: the losses read after every step
        train_module.train_step(state)
        train_module.read_losses(state)
    assert len(counter.calls) == 4, counter.calls
