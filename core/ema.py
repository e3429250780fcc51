"""The EMA generator: an exponential moving average of G's weights, used for evaluation.

As in stylegan2-ada (``training_loop.py``), the average has a half-life in images,
``ema_kimg`` thousand, capped by ``ema_rampup`` times the images seen so far, so that a
short or young run is not dominated by its random or pretrained start:

    half-life = min(1000 * ema_kimg, ema_rampup * images_seen)      [images]
    beta      = 0.5 ** (batch_size / half-life)
    G_ema     = beta * G_ema + (1 - beta) * G                        [trainable tensors]

Only G's trainable tensors are averaged: a frozen tensor is constant, so its average is
itself. Buffers (batch-norm running statistics) are copied from G, as stylegan2-ada does, so
the EMA generator in eval mode uses G's current statistics. An AdaFM unit averages its
gamma and beta; its effective kernel gamma * W + beta is linear in them (W is frozen), so
that is the average of the effective kernel too.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """An averaged copy of ``net``: call ``update`` after every optimiser step of ``net``."""

    def __init__(self, net: nn.Module, kimg: float, rampup: float | None, batch_size: int):
        self.kimg, self.rampup, self.batch_size = kimg, rampup, batch_size
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        mine = dict(self.net.named_parameters())
        trained = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        self._sources = [p for _, p in trained]
        self._targets = [mine[n] for n, _ in trained]
        self._buffers = list(zip(net.buffers(), self.net.buffers()))

    def beta(self, images_seen: int) -> float:
        """The averaging weight of the old average after ``images_seen`` images."""
        half_life = self.kimg * 1000
        if self.rampup is not None:
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (self.batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, images_seen: int) -> None:
        if self._sources:
            torch._foreach_lerp_(self._targets, self._sources, 1.0 - self.beta(images_seen))
        for source, target in self._buffers:
            target.copy_(source)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state)
