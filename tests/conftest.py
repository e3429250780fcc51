"""Shared fixtures: tiny synthetic image folders, tiny source checkpoints, FID weights."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gansweep.core.checkpoint import snapshot
from gansweep.core.config import TrainConfig
from gansweep.core.models import ArchConfig
from gansweep.core.synthetic import make_domain
from gansweep.core.train import train
from tests.helpers import finish, gansweep, installed_trackers, write_spec

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = Path(os.environ.get("GANSWEEP_INCEPTION_WEIGHTS",
                              SHARED / "fid" / "pt_inception-2015-12-05-fid-pool3.pth"))
EMOJI = SHARED / "data" / "emoji"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """One CPU thread, as ../shared/reference's fixtures were recorded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def weights() -> str:
    assert WEIGHTS.is_file(), f"FID Inception weights not found at {WEIGHTS} (see README)"
    return str(WEIGHTS)


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> Path:
    return make_domain(tmp_path_factory.mktemp("data") / "faces", "faces", 40, 32, seed=1)


@pytest.fixture(scope="session")
def blobs(tmp_path_factory) -> Path:
    return make_domain(tmp_path_factory.mktemp("data") / "blobs", "blobs", 40, 32, seed=2)


def make_source(out: Path, data: Path, arch: ArchConfig, loss: str = "wgan",
                iters: int = 2) -> Path:
    """A tiny pretrained source checkpoint (no metrics)."""
    cfg = TrainConfig(data=str(data), out=str(out.parent / (out.stem + "_run")), arch=arch,
                      loss=loss, batch_size=8, iters=iters, metrics=[], label="pretrain")
    snapshot(train(cfg), out)
    return out


TINY = {"dcgan": ArchConfig("dcgan", 32, 8, 16, "batch"),
        "dcgan64": ArchConfig("dcgan", 64, 4, 16, "batch"),
        "resnet": ArchConfig("resnet", 32, 4, 16, "layer"),
        "sngan": ArchConfig("sngan", 32, 8, 16),
        "stylegan2": ArchConfig("stylegan2", 32, 8, 16, mapping_layers=2)}
LOSS_OF_NORM = {"batch": "wgan", "layer": "wgan-gp", "spectral": "hinge", "none": "stylegan2"}


@pytest.fixture(scope="session")
def sources(tmp_path_factory, blobs) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {name: make_source(root / f"{name}.pt", blobs, arch, loss=LOSS_OF_NORM[arch.d_norm])
            for name, arch in TINY.items()}


@pytest.fixture(scope="session")
def tiny_sweep(sources, faces, weights, tmp_path_factory) -> tuple[Path, str]:
    """One real ASHA sweep of 11 trials (6 partition pairs, 3 baselines, 2 forward-transfer
    plans) reporting to every tracker whose package is installed, shared by the tests that
    read its results."""
    root = tmp_path_factory.mktemp("tiny_sweep")
    spec = write_spec(root / "spec.yaml", sources["dcgan"], faces, weights,
                      plans=[{"family": "forward", "mode": "freeze", "n": [1, 3]}],
                      training={"lr_mult": {"finetune": 1.0, "adafm": 1.0}},
                      trackers=installed_trackers())
    out = finish(gansweep("launch", spec, "--storage", root / "sweeps"))
    return root / "sweeps" / "tiny", out


@pytest.fixture
def s3(tmp_path, monkeypatch) -> str:
    """A real S3-protocol server (moto's) on a free port of 127.0.0.1 with an empty bucket,
    stopped at the end; returns a storage URI in it. The credentials and endpoint go to this
    process's environment, which the CLI's subprocesses and their Ray workers inherit."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "GANSWEEP_CACHE": str(tmp_path / "cache"), "GANSWEEP_PUSH_S": "0"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="lab")
    yield "s3://lab/sweeps"
    server.stop()

