"""GAN losses with their optimisers, behind a registry.

- ``wgan``: weight clipping at 0.01, RMSprop 5e-5, 5 critic steps (the dissertation's).
- ``wgan-gp``: gradient penalty lambda = 10, Adam 1e-4 with betas (0, 0.9), 5 critic steps
  (Wang et al.'s).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from gansweep.core.registry import Registry

Critic = Callable[[torch.Tensor], torch.Tensor]


class Loss:
    name: str
    n_critic: int = 5
    lr: float
    needs_norm_free_critic = False

    def optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return critic(fake).mean() - critic(real).mean()

    def g_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        return -critic(fake).mean()

    def after_d_step(self, clip_params: list[nn.Parameter]) -> None:
        """Called after every critic update with D's clippable trainable parameters."""


LOSSES: Registry[type[Loss]] = Registry("loss")


@LOSSES.register("wgan")
class WGAN(Loss):
    name = "wgan"
    lr = 5e-5
    clip = 0.01

    def optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(params, lr=lr)

    @torch.no_grad()
    def after_d_step(self, clip_params: list[nn.Parameter]) -> None:
        for p in clip_params:
            p.clamp_(-self.clip, self.clip)


@LOSSES.register("wgan-gp")
class WGANGP(Loss):
    name = "wgan-gp"
    lr = 1e-4
    gp_weight = 10.0
    # The penalty is per-sample; batch norm couples samples and makes it meaningless.
    needs_norm_free_critic = True

    def optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, betas=(0.0, 0.9))

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return super().d_loss(critic, real, fake) + self.gp_weight * penalty


def get_loss(name: str) -> Loss:
    return LOSSES.get(name)()
