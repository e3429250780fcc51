"""The two metrics of the papers that train a network of their own: the independent
Wasserstein critic (Wang et al. 2018, eq. 6) and a target classifier's acceptance rate
(Price 2021). Both are optional per run because of their cost.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gansweep.core.data import ImageSet, to_float
from gansweep.core.dcgan import ConvUnit, DCGANDiscriminator
from gansweep.core.errors import GansweepError
from gansweep.core.fileio import atomic_write
from gansweep.core.losses import get_loss
from gansweep.core.models import ARCHITECTURES, ArchConfig
from gansweep.core.numerics import own_rng
from gansweep.core.torch_files import load_torch_file

CRITIC_WIDTH = 16
CLASSIFIER_VERSION = "1"


def _convnet(resolution: int, outputs: int) -> DCGANDiscriminator:
    """A small DCGAN critic with layer norm (a per-sample penalty needs a norm that does not
    couple samples), with ``outputs`` logits."""
    net = DCGANDiscriminator(ArchConfig("dcgan", resolution, CRITIC_WIDTH, 1, "layer"))
    if outputs != 1:
        features = net.units["fc"].layer.in_features
        net.units["fc"] = ConvUnit(nn.Linear(features, outputs), nn.Identity(), nn.Identity(),
                                   outputs, flatten=True)
    return net


def _halves(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    return perm[: n // 2], perm[n // 2:]


def independent_wasserstein(real: torch.Tensor, fake: torch.Tensor, steps: int = 300,
                            seed: int = 0, device: torch.device | str = "cpu",
                            batch_size: int = 32) -> float:
    """IW(X_real, X_gen) = E_real[D^(x)] - E_gen[D^(x)] (Wang et al. eq. 6) for uint8 image
    sets. A fresh critic is trained with WGAN-GP on one half of each set; the estimate is
    taken on the other, held-out halves, so it is not the critic's own training objective.

    Sign: as in Wang et al. (whose critic scores real images low), IW is the negative of
    the estimated Wasserstein distance: about 0 when the sets match, more negative the
    further apart they are; higher is better.
    """
    sizes = ARCHITECTURES.get("dcgan").resolutions  # the critic is a DCGAN discriminator
    if real.shape[1:] != fake.shape[1:] or real.shape[-1] not in sizes:
        raise GansweepError(f"IW: the critic needs both image sets at one size of {sizes} "
                            f"px, got {tuple(real.shape[1:])} and {tuple(fake.shape[1:])} "
                            f"(give a resolution)")
    if min(len(real), len(fake)) < 4:
        raise GansweepError(f"IW needs at least 4 images per set, got {len(real)} and "
                            f"{len(fake)}")
    gen = torch.Generator().manual_seed(seed)
    (real_fit, real_eval), (fake_fit, fake_eval) = _halves(len(real), gen), _halves(len(fake),
                                                                                     gen)
    with own_rng(device):
        torch.manual_seed(seed)
        critic = _convnet(real.shape[-1], 1).to(device).train()
        loss = get_loss("wgan-gp")
        opt = loss.optimizer(critic.parameters(), loss.lr)
        batch = min(batch_size, len(real_fit), len(fake_fit))
        for _ in range(steps):
            r = real[real_fit[torch.randint(len(real_fit), (batch,), generator=gen)]]
            f = fake[fake_fit[torch.randint(len(fake_fit), (batch,), generator=gen)]]
            d_loss = loss.d_loss(critic, to_float(r.to(device)), to_float(f.to(device)))
            opt.zero_grad(set_to_none=True)
            d_loss.backward()
            opt.step()
        critic.eval()
        with torch.no_grad():
            score = lambda x: torch.cat([critic(to_float(b.to(device))).flatten()  # noqa: E731
                                         for b in x.split(256)]).mean()
            # The critic scores real images high; Wang et al.'s scores them low.
            return float(score(fake[fake_eval]) - score(real[real_eval]))


# --- the target classifier ------------------------------------------------------------------

@dataclass
class TargetClassifier:
    """A CNN that tells the target's classes (one, or one per class sub-folder) from
    ``other`` images (negatives); Price's classifier score is the fraction of generated
    images it accepts. ``accuracy`` is measured on a held-out fifth of its data."""

    net: nn.Module
    classes: list[str]
    accuracy: float

    @torch.no_grad()
    def predict(self, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        self.net.to(device).eval()
        return torch.cat([self.net(to_float(b.to(device))).argmax(1).cpu()
                          for b in images.split(256)])

    def score(self, images: torch.Tensor, labels: torch.Tensor | None,
              device: torch.device | str = "cpu") -> float:
        """The fraction of ``images`` classified as a target class; with ``labels`` (a
        conditional generator's classes), as their own class."""
        predicted = self.predict(images, device)
        if labels is None:
            return float((predicted < len(self.classes)).float().mean())
        return float((predicted == labels.cpu()).float().mean())


def _classifier_key(target: ImageSet, negatives: ImageSet, steps: int, seed: int) -> str:
    h = hashlib.sha256(f"v{CLASSIFIER_VERSION}|{steps}|{seed}|{target.classes}".encode())
    for part in (target.digest(), negatives.digest()):
        h.update(part.encode())
    if target.labels is not None:
        h.update(target.labels.numpy().tobytes())
    return h.hexdigest()[:32]


def train_classifier(target: ImageSet, negatives: ImageSet, steps: int = 300, seed: int = 0,
                     device: torch.device | str = "cpu",
                     cache_dir: str | os.PathLike | None = None) -> TargetClassifier:
    """Train (or load from ``cache_dir``, keyed by a hash of everything that produced it)
    the target classifier. Batches are half target, half negatives, with random flips."""
    classes = target.classes or ["target"]
    labels = target.labels if target.labels is not None else torch.zeros(len(target),
                                                                          dtype=torch.long)
    resolution = target.images.shape[-1]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"classifier-{_classifier_key(target, negatives, steps, seed)}.pt"
        if path.is_file():
            saved = load_torch_file(path, "target classifier")
            with own_rng():  # its initialisation is overwritten: draw nothing from the run's
                net = _convnet(resolution, len(classes) + 1)
            net.load_state_dict(saved["state"])
            return TargetClassifier(net, saved["classes"], saved["accuracy"])

    gen = torch.Generator().manual_seed(seed)
    images = torch.cat([target.images, negatives.images])
    y = torch.cat([labels, torch.full((len(negatives),), len(classes), dtype=torch.long)])
    is_target = torch.arange(len(images)) < len(target)
    held = torch.rand(len(images), generator=gen) < 0.2
    fit_t, fit_n = torch.nonzero(~held & is_target)[:, 0], torch.nonzero(~held & ~is_target)[:, 0]
    if len(fit_t) == 0 or len(fit_n) == 0:
        raise GansweepError(f"the classifier needs target and negative images, got "
                            f"{len(target)} and {len(negatives)}")
    with own_rng(device):
        torch.manual_seed(seed)
        net = _convnet(resolution, len(classes) + 1).to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
        half = 16
        for _ in range(steps):
            idx = torch.cat([fit_t[torch.randint(len(fit_t), (half,), generator=gen)],
                             fit_n[torch.randint(len(fit_n), (half,), generator=gen)]])
            x = to_float(images[idx].to(device))
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(net(x), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net = net.cpu().eval()
    result = TargetClassifier(net, classes, 0.0)
    if held.any():  # balanced: the mean of the per-class accuracies
        hit = result.predict(images[held]) == y[held]
        result.accuracy = float(torch.stack([hit[y[held] == c].float().mean()
                                             for c in y[held].unique()]).mean())
    if path is not None:
        atomic_write(path, lambda f: torch.save(
            {"state": net.state_dict(), "classes": classes, "accuracy": result.accuracy}, f))
    return result
