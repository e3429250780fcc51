"""``compile: true``: the step captured by torch.compile trains as the eager step does (on
the CPU, inductor's default mode; its fused kernels round differently, so equal within
float32 tolerance, not bit for bit), and a loss it cannot capture is refused in one line."""
from __future__ import annotations

import shutil

import pytest
import torch

from gansweep.core.config import TrainConfig
from gansweep.core.errors import GansweepError
from gansweep.core.models import ArchConfig
from gansweep.core.train import read_losses, setup, train_step
from gansweep.core.trial import transfer_config
from tests.helpers import assert_one_clear_line, cli_in_process, write_spec

from .conftest import TINY


@pytest.mark.slow  # inductor compiles G's and D's kernels: about a minute on two busy cores
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_the_captured_step_computes_what_the_eager_one_does(sources, faces, tmp_path,
                                                            one_thread):
    """Frozen, AdaFM-modulated (a parametrisation) and fine-tuned units. The gradients of
    D's and G's losses agree to float32 rounding; over steps, RMSprop's normalisation turns
    that rounding of near-zero gradients into differences of the order of lr, so the
    trained weights are compared through the losses."""
    def run(compile_: bool):
        cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / str(compile_)),
                              d="D(1,1,3)", g="G(1,1,3)", iters=3, batch_size=4, n_critic=1,
                              metrics=[], ema_kimg=0.1, compile=compile_)
        s = setup(cfg)
        torch.manual_seed(5)
        real, z = s.data[:4].float().div(127.5).sub(1), torch.randn(4, s.G.z_dim)
        s.loss.d_loss(s.D, real, s.G(z).detach()).backward()
        s.loss.g_loss(s.D, s.G(z)).backward()
        grads = {f"{net}.{k}": p.grad.clone() for net, m in (("G", s.G), ("D", s.D))
                 for k, p in m.named_parameters() if p.grad is not None}
        for _ in range(cfg.iters):
            train_step(s)
        return s, grads, read_losses(s)

    (eager, eager_grads, eager_losses), (captured, grads, losses) = run(False), run(True)
    assert captured.G._compiled_call_impl is not None  # it did compile
    assert grads.keys() == eager_grads.keys() and len(grads) > 4
    for k, g in eager_grads.items():
        torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=1e-5 * g.abs().max().item(),
                                   msg=lambda m, k=k: f"{k}: {m}")
    for a, b in ((eager.G, captured.G), (eager.D, captured.D)):
        assert a.state_dict().keys() == b.state_dict().keys()  # checkpoints interchangeable
    assert losses == pytest.approx(eager_losses, rel=1e-3, abs=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_captured_step_runs_on_a_gpu(sources, faces, tmp_path):
    """reduce-overhead (CUDA graphs) on a GPU: the step runs and trains as the eager one does
    (to a loose tolerance: TF32 and autotuned convolutions round differently in each)."""
    losses = {}
    for compile_ in (False, True):
        cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / str(compile_)),
                              d="D(1,1,3)", g="G(1,1,3)", iters=20, batch_size=8, n_critic=1,
                              metrics=[], device="cuda", compile=compile_)
        state = setup(cfg)
        for _ in range(cfg.iters):
            train_step(state)
        losses[compile_] = read_losses(state)
    assert losses[True] == pytest.approx(losses[False], rel=5e-2, abs=1e-7)


@pytest.mark.parametrize("loss, options, refused", [
    ("wgan-gp", {}, True),
    ("stylegan2", {}, True),  # lazy R1
    ("stylegan2", {"r1_gamma": 0.0, "path_length": 2.0}, True),
    ("stylegan2", {"r1_gamma": 0.0}, False),
    ("wgan", {}, False),
    ("hinge", {}, False),
    ("bce", {}, False),
])
def test_a_loss_it_cannot_capture_is_refused(loss, options, refused):
    arch = TINY["stylegan2"] if loss == "stylegan2" else ArchConfig("dcgan", 32, 8, 16, "layer")

    def make() -> TrainConfig:
        return TrainConfig(data="d", out="o", arch=arch, loss=loss, compile=True, **options)
    if refused:
        with pytest.raises(GansweepError, match=f"^compile: true cannot capture loss '{loss}'"):
            make()
    else:
        assert make().compile


def test_the_option_of_transfer_and_pretrain(sources, faces, tmp_path):
    out = cli_in_process("transfer", "--source", sources["resnet"], "--data", faces,
                         "--baseline", "fine-tune", "--loss", "wgan-gp", "--compile",
                         "--metrics", "none", "--out", tmp_path / "t")
    assert_one_clear_line(out, "transfer", "compile: true cannot capture loss 'wgan-gp'")
    out = cli_in_process("pretrain", "--data", faces, "--out", tmp_path / "p.pt",
                         "--arch", "stylegan2", "--width", "8", "--loss", "stylegan2",
                         "--compile", "--metrics", "none")
    assert_one_clear_line(out, "pretrain", "compile: true cannot capture loss 'stylegan2'")


@pytest.mark.parametrize("value, fragment", [
    (True, "training.compile: true cannot capture loss 'wgan-gp'"),
    ("yes", "training.compile: 'yes'"),
])
def test_a_spec_refuses_what_it_cannot_capture(sources, faces, weights, tmp_path, value,
                                              fragment):
    from gansweep.sweep.spec.files import load_spec

    spec = write_spec(tmp_path / "spec.yaml", sources["resnet"], faces, weights,
                      partitions=[], baselines=["fine-tune"], training={"compile": value})
    with pytest.raises(GansweepError) as e:
        load_spec(spec)
    assert str(e.value).startswith(fragment) and "\n" not in str(e.value), str(e.value)
