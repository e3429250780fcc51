"""The training loop: bit-for-bit resume, divergence, checkpoints, both losses."""
import json

import pytest
import torch

from gansweep.core.checkpoint import load_checkpoint
from gansweep.core.config import TrainConfig
from gansweep.core.errors import DivergenceError, GansweepError
from gansweep.core.features import release_extractors
from gansweep.core.losses import LOSSES
from gansweep.core.models import ArchConfig
from gansweep.core.train import setup, train, train_step
from gansweep.core.trial import transfer_config

from .conftest import make_source


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("source, loss, augment, ema_kimg", [
    ("dcgan", "wgan", "mild+diffaug", 0.1),
    ("resnet", "wgan-gp", "flip", None),
])
def test_resume_continues_identically(sources, faces, tmp_path, source, loss, augment,
                                      ema_kimg):
    def cfg(out, iters):
        return transfer_config(str(sources[source]), str(faces), str(tmp_path / out),
                               d=f"D(1,1,{4 if source == 'resnet' else 3})",
                               g=f"G(1,1,{4 if source == 'resnet' else 3})", loss=loss,
                               augment=augment, iters=iters, eval_every=2, batch_size=8,
                               metrics=[], seed=3, ema_kimg=ema_kimg)
    straight = train(cfg("a", 4))
    train(cfg("b", 2))
    resumed = train(cfg("b", 4), resume=tmp_path / "b" / "checkpoint.pt")
    assert resumed.iteration == straight.iteration == 4
    assert _states_equal(straight.G.state_dict(), resumed.G.state_dict())
    assert _states_equal(straight.D.state_dict(), resumed.D.state_dict())
    if ema_kimg is not None:  # the EMA generator survives resume bit for bit
        assert _states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
        assert not _states_equal(straight.ema.state_dict(), straight.G.state_dict())
    assert straight.last_losses == resumed.last_losses
    history = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert [r["iteration"] for r in history] == [2, 4]


def test_stylegan2_resume_continues_identically(sources, faces, tmp_path):
    """StyleGAN2's noise inputs, lazy R1 (iteration 0) and path-length regularisation
    (iterations 0 and 4: the second depends on the running mean checkpointed at 2)."""
    def cfg(out, iters):
        return transfer_config(str(sources["stylegan2"]), str(faces), str(tmp_path / out),
                               d="D(1,1,3)", g="G(1,1,3)", loss="stylegan2", path_length=2.0,
                               augment="diffaug", iters=iters, eval_every=2, batch_size=4,
                               metrics=[], seed=3, ema_kimg=0.1)
    straight = train(cfg("a", 6))
    train(cfg("b", 2))
    resumed = train(cfg("b", 6), resume=tmp_path / "b" / "checkpoint.pt")
    assert _states_equal(straight.G.state_dict(), resumed.G.state_dict())
    assert _states_equal(straight.D.state_dict(), resumed.D.state_dict())
    assert _states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
    assert straight.loss.mean_path_length == resumed.loss.mean_path_length > 0


def test_a_run_does_not_depend_on_what_its_process_ran_before(sources, faces, weights,
                                                              tmp_path):
    """Tune reuses worker processes: the first run of a process builds Inception (whose
    default initialisation draws random numbers), the next finds it cached. Both must train
    and score identically."""
    def run(out):
        return train(transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / out),
                                     baseline="fine-tune", iters=2, eval_every=2, batch_size=8,
                                     metrics=["fid"], fid_samples=8, fid_real=16,
                                     inception_weights=weights, seed=1))
    release_extractors()
    first, second = run("first"), run("second")
    assert _states_equal(first.G.state_dict(), second.G.state_dict())
    assert first.history[-1]["fid"] == second.history[-1]["fid"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_deterministic_resume_on_a_gpu_is_bit_exact(sources, faces, tmp_path):
    """On a GPU, 'deterministic' makes a resumed run continue bit for bit (without it,
    autotuned and TF32 convolutions need not), and the run records what it used."""
    def cfg(out, iters):
        return transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / out),
                               d="D(1,1,3)", g="G(1,1,3)", iters=iters, eval_every=2,
                               batch_size=8, metrics=[], seed=3, ema_kimg=0.1,
                               device="cuda", deterministic=True)
    straight = train(cfg("a", 4))
    train(cfg("b", 2))
    resumed = train(cfg("b", 4), resume=tmp_path / "b" / "checkpoint.pt")
    assert _states_equal(straight.G.state_dict(), resumed.G.state_dict())
    assert _states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
    assert resumed.numerics["device"].startswith("cuda") and resumed.numerics["deterministic"]
    assert not resumed.numerics["tf32"]


def test_divergence_raises_specific_error(sources, faces, tmp_path):
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path),
                          baseline="fine-tune", iters=3, batch_size=8, metrics=[])
    state = setup(cfg)
    with torch.no_grad():
        next(state.D.parameters()).fill_(float("nan"))
    with pytest.raises(DivergenceError, match="diverged at iteration 1") as e:
        train_step(state)
    assert e.value.iteration == 1


def test_absurd_learning_rate_diverges(sources, faces, tmp_path):
    cfg = transfer_config(str(sources["resnet"]), str(faces), str(tmp_path), baseline="fine-tune",
                          lr=1e12, iters=40, batch_size=8, metrics=[])
    with pytest.raises(DivergenceError):
        train(cfg)


def test_checkpoint_holds_config_and_metadata(sources):
    ckpt = load_checkpoint(sources["dcgan"])
    assert ckpt["arch"]["name"] == "dcgan" and ckpt["config"]["loss"] == "wgan"
    assert TrainConfig.from_dict(ckpt["config"]).arch == ArchConfig(**ckpt["arch"])


def test_bad_checkpoints(sources, tmp_path):
    good = sources["dcgan"]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    no_d = tmp_path / "no_d.pt"
    ckpt = load_checkpoint(good)
    del ckpt["D"]
    torch.save(ckpt, no_d)
    for path, fragment in [(truncated, "not a readable"), (junk, "not a readable"),
                           (plain, "not a gansweep checkpoint"), (no_d, "missing the discrim"),
                           (tmp_path / "absent.pt", "no such file")]:
        with pytest.raises(GansweepError, match=fragment) as e:
            load_checkpoint(path)
        assert str(path) in str(e.value)


def test_weights_of_another_architecture(sources, faces, tmp_path):
    ckpt = load_checkpoint(sources["dcgan"])
    ckpt["arch"] = load_checkpoint(sources["resnet"])["arch"]
    lying = tmp_path / "lying.pt"
    torch.save(ckpt, lying)
    with pytest.raises(GansweepError, match="does not fit the architecture"):
        setup(transfer_config(str(lying), str(faces), str(tmp_path / "r"), baseline="fine-tune",
                              metrics=[], batch_size=8))


def test_wgan_gp_refuses_batch_norm_critic(sources, faces, tmp_path):
    with pytest.raises(GansweepError, match="d_norm='batch'"):
        setup(transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path),
                              baseline="fine-tune", loss="wgan-gp", metrics=[], batch_size=8))


def test_config_errors_name_the_field(faces, tmp_path):
    for kwargs, fragment in [({"batch_size": 0}, "batch_size: 0"), ({"loss": "hnge"},
                             f"unknown loss 'hnge'; valid: {', '.join(sorted(LOSSES))}"),
                             ({"augment": "flip+rot"}, "augment: unknown preset 'rot'"),
                             ({"arch": {"name": "dcgan", "resolution": 48}},
                              "arch.resolution: 48")]:
        with pytest.raises(GansweepError, match=fragment):
            TrainConfig(data=str(faces), out=str(tmp_path), **kwargs)


def test_scratch_init_needs_full_fine_tune(sources, faces, tmp_path):
    with pytest.raises(GansweepError, match="g_init: 'scratch' needs G fully fine-tuned"):
        transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), d="D(0,0,5)",
                        g="G(1,0,4)", g_init="scratch")
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), d="D(2,0,3)",
                          g="G(0,0,5)", g_init="scratch")
    assert cfg.g_plan == ["reinit"] * 5 and cfg.d_plan[:2] == ["freeze", "freeze"]


def test_fully_frozen_nets_train_without_optimizer(sources, faces, tmp_path):
    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path), d="D(5,0,0)",
                          g="G(0,0,5)", iters=2, batch_size=8, metrics=[])
    state = train(cfg)
    assert state.opt_d is None and state.opt_g is not None and state.iteration == 2


def test_pretrain_wgan_gp_resnet(blobs, tmp_path):
    path = make_source(tmp_path / "src.pt", blobs, ArchConfig("resnet", 32, 2, 8, "none"),
                       loss="wgan-gp", iters=2)
    assert load_checkpoint(path)["iteration"] == 2


def test_eval_at_start_records_iteration_zero_once(sources, faces, tmp_path):
    """Denton's 'score before any training': iteration 0 is evaluated and recorded; a
    resumed run does not evaluate it again."""
    def cfg(iters):
        return transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / "run"),
                               baseline="fine-tune", iters=iters, eval_every=2, batch_size=8,
                               metrics=[], eval_at_start=True)
    state = train(cfg(2))
    assert [r["iteration"] for r in state.history] == [0, 2]
    train(cfg(4), resume=tmp_path / "run" / "checkpoint.pt")
    history = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["iteration"] for r in history] == [0, 2, 4]
    assert (tmp_path / "run" / "samples" / "iter_0000000.png").is_file()


def test_transfer_to_a_lower_resolution_keeps_the_documented_units(sources, faces, tmp_path):
    """Price's 64 -> 32 px transfer: G keeps b4..b32 and gets a new output unit (rgb), D
    keeps b32..fc and gets a new input unit (rgb); the kept units hold the source's tensors
    bit for bit, the new ones are re-initialised whatever the partition says."""
    source = load_checkpoint(sources["dcgan64"])
    cfg = transfer_config(str(sources["dcgan64"]), str(faces), str(tmp_path), d="D(1,2,2)",
                          g="G(1,2,2)", resolution=32, iters=1, batch_size=8, metrics=[])
    assert cfg.new_units == ["G.rgb", "D.rgb"]
    assert cfg.arch.resolution == 32 and cfg.arch.width == 2 * source["arch"]["width"]
    assert cfg.g_plan[-1] == "reinit" and cfg.d_plan[0] == "reinit"  # were freeze / freeze
    s = setup(cfg)
    for net, module, kept in (("G", s.G, ["b4", "b8", "b16", "b32"]),
                              ("D", s.D, ["b32", "b16", "b8", "fc"])):
        state = {k: v for k, v in module.state_dict().items()
                 if "parametrizations" not in k or k.endswith(".original")}
        for key, value in state.items():
            unit = key.split(".")[1]
            theirs = key.replace("parametrizations.weight.original", "weight")
            if unit in kept:
                assert torch.equal(value, source[net][theirs]), key
            else:
                assert unit == "rgb" and theirs not in source[net]
    assert train(cfg, state=s).iteration == 1 and s.G(torch.randn(2, s.G.z_dim)).shape[-1] == 32
    with pytest.raises(GansweepError, match="resnet cannot transfer across resolutions"):
        transfer_config(str(sources["resnet"]), str(faces), str(tmp_path), resolution=64,
                        baseline="fine-tune")
    with pytest.raises(GansweepError, match="transfers to a lower resolution only, not 128"):
        transfer_config(str(sources["dcgan64"]), str(faces), str(tmp_path), resolution=128,
                        baseline="fine-tune")
