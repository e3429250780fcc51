"""GAN losses with their optimisers, behind a registry.

- ``wgan``: weight clipping at 0.01, RMSprop 5e-5, 5 critic steps (the dissertation's).
- ``wgan-gp``: gradient penalty lambda = 10, Adam 1e-4 with betas (0, 0.9), 5 critic steps
  (Wang et al.'s).
- ``hinge``: the hinge loss, Adam 2e-4 with betas (0, 0.9), 5 critic steps (SNGAN's, as
  Denton et al. train it).
- ``bce``: the non-saturating GAN loss with binary cross-entropy, Adam 2e-4 with beta1 0.5,
  one critic step (DCGAN's, as Price trains it), with Price's optional label smoothing and
  label noise on D's targets.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.registry import Registry

Critic = Callable[[torch.Tensor], torch.Tensor]
Params = Iterable[nn.Parameter] | Iterable[dict]  # parameters, or parameter groups


class Loss:
    name: str
    n_critic: int = 5
    lr: float
    needs_norm_free_critic = False

    def optimizer(self, params: Params, lr: float) -> torch.optim.Optimizer:
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

    def optimizer(self, params: Params, lr: float) -> torch.optim.Optimizer:
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

    def optimizer(self, params: Params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, betas=(0.0, 0.9))

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return super().d_loss(critic, real, fake) + self.gp_weight * penalty


@LOSSES.register("hinge")
class Hinge(Loss):
    name = "hinge"
    lr = 2e-4

    def optimizer(self, params: Params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, betas=(0.0, 0.9))

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - critic(real)).mean() + F.relu(1 + critic(fake)).mean()


@LOSSES.register("bce")
class BCE(Loss):
    """D's targets: 1 for real, 0 for fake; with ``label_smoothing`` s, drawn uniformly from
    [1 - s, 1 + s] and [-s, s] (Price: s = 0.2); with ``label_noise`` p, each target is
    swapped with the other class's with probability p. G's target is always a hard 1."""

    name = "bce"
    lr = 2e-4
    n_critic = 1

    def __init__(self, label_smoothing: float = 0.0, label_noise: float = 0.0):
        self.label_smoothing, self.label_noise = label_smoothing, label_noise

    def optimizer(self, params: Params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))

    def targets(self, n: int, real: bool, device: torch.device) -> torch.Tensor:
        """D's targets for n real (or fake) images, from the global RNG (resume-exact)."""
        s = self.label_smoothing
        value = torch.full((n,), 1.0 if real else 0.0, device=device)
        if self.label_noise > 0:
            swapped = torch.rand(n, device=device) < self.label_noise
            value = torch.where(swapped, 1 - value, value)
        if s > 0:
            value = value + (2 * torch.rand(n, device=device) - 1) * s
        return value

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        out_real, out_fake = critic(real).flatten(), critic(fake).flatten()
        return (F.binary_cross_entropy_with_logits(
                    out_real, self.targets(len(out_real), True, out_real.device))
                + F.binary_cross_entropy_with_logits(
                    out_fake, self.targets(len(out_fake), False, out_fake.device)))

    def g_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-critic(fake)).mean()  # BCE against a hard "real" target


def get_loss(name: str, label_smoothing: float = 0.0, label_noise: float = 0.0) -> Loss:
    """The loss ``name``; label smoothing and noise apply to ``bce`` only (TrainConfig
    refuses them for the others)."""
    cls = LOSSES.get(name)
    return BCE(label_smoothing, label_noise) if cls is BCE else cls()
