"""pytorch-fid's FID Inception, loaded directly from a state dict in its layout.

pytorch-fid builds its network (torchvision's Inception v3 with the FID blocks of the
TensorFlow graph ``inception-2015-12-05``) and then downloads the weights; it offers no way
to give it a weights file. ``FIDInception`` builds the same modules from pytorch-fid's own
block classes, loads the given state dict (``load_weights``: a file, or pytorch-fid's
download when there is none) and runs pytorch-fid's forward pass: bilinear resize to 299,
scale to [-1, 1], the layers up to the final average pool. It returns the 2048-d pool3
features (FID, KID) and, from the same pass, the 1008 logits of the network's ``fc`` without
its bias (the Inception Score: the original TensorFlow code multiplies pool3 by the softmax
weights only, and torch-fidelity's ``logits_unbiased`` does the same). Its features equal
pytorch-fid's ``InceptionV3`` bit for bit (tests/test_metrics.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.hub import load_state_dict_from_url
from torch.nn import functional as F


def _pfid():
    # pytorch-fid imports torchvision, and torchvision torch._dynamo: seconds of the start of
    # every process, which the commands that build no Inception (status, report) do not pay.
    from pytorch_fid import inception
    return inception


def download_name() -> str:
    """The file name of pytorch-fid's weights download (in the torch hub cache)."""
    return _pfid().FID_WEIGHTS_URL.rsplit("/", 1)[1]


def build() -> nn.Module:
    """The FID Inception's modules, as pytorch_fid.inception.fid_inception_v3 makes them."""
    pfid = _pfid()
    net = pfid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfid.FIDInceptionE_1(1280)
    net.Mixed_7c = pfid.FIDInceptionE_2(2048)
    return net


def download_weights() -> dict[str, torch.Tensor]:
    """pytorch-fid's own weights, from its release URL (cached by torch hub)."""
    return load_state_dict_from_url(_pfid().FID_WEIGHTS_URL, progress=True)


class FIDInception(nn.Module):
    """pool3 features and logits of pytorch-fid's FID Inception for images in [0, 1]."""

    LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "pool", "Conv2d_3b_1x1",
              "Conv2d_4a_3x3", "pool", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
              "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
              "Mixed_7c")

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        self.net = build()
        self.net.load_state_dict(state)  # strict: a state dict of another layout raises
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N x 2048 pool3 features, N x 1008 logits without fc's bias)."""
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for name in self.LAYERS:
            x = self.pool(x) if name == "pool" else getattr(self.net, name)(x)
        pool3 = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return pool3, pool3 @ self.net.fc.weight.T

    @property
    def has_classifier(self) -> bool:
        """False for pytorch-fid-style FID weights whose ``fc`` was zero-filled."""
        return bool(self.net.fc.weight.abs().sum() > 0)
