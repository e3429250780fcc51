"""GAN losses with their optimisers, behind a registry.

- ``wgan``: weight clipping at 0.01, RMSprop 5e-5, 5 critic steps (the dissertation's).
- ``wgan-gp``: gradient penalty lambda = 10, Adam 1e-4 with betas (0, 0.9), 5 critic steps
  (Wang et al.'s).
- ``hinge``: the hinge loss, Adam 2e-4 with betas (0, 0.9), 5 critic steps (SNGAN's, as
  Denton et al. train it).
- ``bce``: the non-saturating GAN loss with binary cross-entropy, Adam 2e-4 with beta1 0.5,
  one critic step (DCGAN's, as Price trains it), with Price's optional label smoothing and
  label noise on D's targets.
- ``stylegan2``: StyleGAN2's (Karras et al. 2020, appendix B): the non-saturating logistic
  loss, lazy R1 on real images every 16 D steps (weight ``r1_gamma``, default 10, scaled by
  16), optional lazy path-length regularisation of G every 4 G steps (weight
  ``path_length``, StyleGAN2's 2; default 0: off; half the batch, decay 0.01, scaled by 4;
  needs the ``stylegan2`` generator), Adam 0.002 with betas (0, 0.99), each net's lr and
  beta2 corrected for its lazy regularisation (x 16/17 and 0.99^(16/17) for D, x 4/5 for G
  with path length), one critic step.
"""
from __future__ import annotations

import math
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
    # Its penalty differentiates a gradient (create_graph): torch.compile cannot capture a
    # double backward, so ``compile`` refuses the loss.
    double_backward = False

    def optimizer(self, params: Params, lr: float, net: str = "D") -> torch.optim.Optimizer:
        """The optimiser of ``net`` (G or D)."""
        raise NotImplementedError

    def d_penalty(self, critic: Critic, real: torch.Tensor,
                  iteration: int) -> torch.Tensor | None:
        """A regulariser of D minimised in its own step after D's loss at ``iteration``
        (lazy regularisation); None where there is none at this iteration."""
        return None

    def g_penalty(self, generator: nn.Module, noise: Callable[[int], torch.Tensor], batch: int,
                  iteration: int) -> torch.Tensor | None:
        """A regulariser of G minimised in its own step after G's loss (latents drawn by
        ``noise(n)`` only where it applies, so other losses' random streams are untouched);
        None where there is none at this iteration."""
        return None

    def state_dict(self) -> dict:
        """What the loss keeps between steps (checkpointed for an exact resume)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

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

    def optimizer(self, params: Params, lr: float, net: str = "D") -> torch.optim.Optimizer:
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
    double_backward = True

    def optimizer(self, params: Params, lr: float, net: str = "D") -> torch.optim.Optimizer:
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

    def optimizer(self, params: Params, lr: float, net: str = "D") -> torch.optim.Optimizer:
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

    def optimizer(self, params: Params, lr: float, net: str = "D") -> torch.optim.Optimizer:
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


@LOSSES.register("stylegan2")
class StyleGAN2Loss(Loss):
    name = "stylegan2"
    lr = 0.002
    n_critic = 1
    r1_every = 16
    # R1 is a per-sample gradient norm; batch norm couples samples.
    needs_norm_free_critic = True

    path_every = 4
    path_decay = 0.01

    def __init__(self, r1_gamma: float | None = None, path_length: float = 0.0):
        self.r1_gamma = 10.0 if r1_gamma is None else r1_gamma
        self.path_length = path_length
        # The running mean the penalty pulls path lengths to: a float, or after the first
        # penalty a tensor on the device (a float would wait for the GPU every 4 steps).
        self.mean_path_length: float | torch.Tensor = 0.0

    @property
    def double_backward(self) -> bool:  # R1 and path length differentiate gradients
        return bool(self.r1_gamma or self.path_length)

    def optimizer(self, params: Params, lr: float, net: str = "D") -> torch.optim.Optimizer:
        every = self.r1_every if net == "D" else self.path_every if self.path_length else 0
        ratio = every / (every + 1) if every else 1.0
        params = [{**g, "lr": g["lr"] * ratio} if isinstance(g, dict) and "lr" in g else g
                  for g in params]
        return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99 ** ratio))

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(critic(fake)).mean() + F.softplus(-critic(real)).mean()

    def g_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-critic(fake)).mean()

    def d_penalty(self, critic: Critic, real: torch.Tensor,
                  iteration: int) -> torch.Tensor | None:
        if iteration % self.r1_every or not self.r1_gamma:
            return None
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
        r1 = grad.pow(2).flatten(1).sum(1).mean()
        return self.r1_gamma / 2 * r1 * self.r1_every

    def g_penalty(self, generator: nn.Module, noise: Callable[[int], torch.Tensor], batch: int,
                  iteration: int) -> torch.Tensor | None:
        if not self.path_length or iteration % self.path_every:
            return None
        images, latents = generator(noise(max(1, batch // 2)), return_latents=True)
        # Random image-space directions scaled so the expected length does not depend on
        # the resolution; the Jacobian-vector lengths are pulled to their running mean.
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), latents, create_graph=True)
        lengths = grad.pow(2).sum(2).mean(1).sqrt()
        mean = self.mean_path_length + self.path_decay * (lengths.mean() - self.mean_path_length)
        self.mean_path_length = mean.detach()
        return self.path_length * self.path_every * (lengths - mean).pow(2).mean()

    def state_dict(self) -> dict:
        return {"mean_path_length": float(self.mean_path_length)}

    def load_state_dict(self, state: dict) -> None:
        self.mean_path_length = float(state["mean_path_length"])


def get_loss(name: str, label_smoothing: float = 0.0, label_noise: float = 0.0,
             r1_gamma: float | None = None, path_length: float = 0.0) -> Loss:
    """The loss ``name``; label smoothing and noise apply to ``bce`` only, ``r1_gamma`` and
    ``path_length`` to ``stylegan2`` only (TrainConfig refuses them for the others)."""
    cls = LOSSES.get(name)
    if cls is BCE:
        return BCE(label_smoothing, label_noise)
    return StyleGAN2Loss(r1_gamma, path_length) if cls is StyleGAN2Loss else cls()
