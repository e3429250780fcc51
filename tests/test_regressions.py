"""Bugs reported against 0.2 (the coherence issue), each with the input that showed it. Every
test here failed before its fix."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from torch import nn

from gansweep.core.errors import GansweepError
from gansweep.core.models import ARCHITECTURES, ArchConfig, TransferNet, cross_resolution
from gansweep.core.treatments import apply_plan
from gansweep.sweep.spec.validate import parse_spec
from tests.helpers import assert_one_clear_line, cli_in_process, write_spec


def _data(sources, faces, **over) -> dict:
    data = {"name": "t", "source": str(sources["dcgan"]), "target": str(faces),
            "partitions": [["D(1,2,2)", "G(1,2,2)"]], "budget": {"iters": 4, "eval_every": 2}}
    return {**data, **over}


def test_a_spec_without_baselines_runs_its_partitions(sources, faces, tmp_path):
    s = parse_spec(_data(sources, faces), tmp_path)  # was: "baselines: empty list"
    assert s.baselines == [] and [t.label for t in s.trials()] == ["D(1,2,2)G(1,2,2)"]
    assert parse_spec(_data(sources, faces, baselines=[]), tmp_path).baselines == []


@pytest.mark.parametrize("name", ["../x", "..", "a/b", ".hidden", ""])
def test_launch_name_is_a_folder_name(sources, faces, weights, tmp_path, name):
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights)
    out = cli_in_process("launch", spec, "--name", name, "--storage", tmp_path / "sweeps")
    assert_one_clear_line(out, "launch", f"--name: {name!r} must be a non-empty folder name"
                          if name else "argument --name: empty value")
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "x").exists()


def test_nothing_outside_a_sweeps_own_mirror_is_deleted(tmp_path, monkeypatch):
    """``--name ..`` on a bucket made the mirrors' root the sweep's local copy, which launch
    then deleted; a mirror is now only ever a sweep folder under its storage's folder."""
    from gansweep.sweep.record.storage import Mirror, mirrors_root

    monkeypatch.setenv("GANSWEEP_CACHE", str(tmp_path / "cache"))
    other = mirrors_root() / "0123456789abcdef" / "other-sweep" / "trials.json"
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    for uri in ("s3://lab/sweeps/..", "s3://lab/sweeps/."):
        with pytest.raises(GansweepError, match="is not a sweep's folder name"):
            Mirror.of(uri)
    with pytest.raises(GansweepError, match="not deleting it"):
        Mirror("s3://lab/sweeps/x", mirrors_root() / "0123456789abcdef").discard_local()
    Mirror.of("s3://lab/sweeps/mine").discard_local()  # its own (absent) folder: fine
    assert other.is_file()


def test_a_checkpoint_folder_replaced_during_a_push_is_skipped(tmp_path, monkeypatch):
    """CI, stop 39: the driver's push walked a trial folder while the trial replaced its
    checkpoint folder; the walk raised ENOENT and the launch ended as a storage failure.
    The race is reproduced by a folder that vanishes between its listing and its scan."""
    import os

    from gansweep.sweep.record.storage import Mirror

    local, bucket = tmp_path / "local", tmp_path / "bucket"
    gone = local / "trial" / "checkpoint_000004"
    gone.mkdir(parents=True)
    (gone / "checkpoint.pt").write_bytes(b"x")
    (local / "trial" / "metrics.jsonl").write_text("{}\n")
    (bucket / "trial").mkdir(parents=True)  # a local "bucket" makes no folders
    scandir = os.scandir

    def racing(path=".", *a):
        if os.fspath(path) == str(gone):
            raise FileNotFoundError(2, "No such file or directory", str(gone))
        return scandir(path, *a)

    monkeypatch.setattr(os, "scandir", racing)
    assert Mirror(str(bucket), local).push() == 1
    assert (bucket / "trial" / "metrics.jsonl").is_file()


@pytest.mark.parametrize("metric", ["kid", "iw", "classifier", "intra_lpips"])
def test_a_noise_margin_needs_a_metric_with_a_sampling_sd(sources, faces, tmp_path, metric):
    data = _data(sources, faces, metric=metric, metrics=["fid", metric],
                 scheduler={"type": "asha", "noise": 2})
    with pytest.raises(GansweepError, match=f"scheduler.noise: 2 needs a metric with a sampling "
                                            f"sd \\(fid, is\\); '{metric}' has none"):
        parse_spec(data, tmp_path)


def test_a_lean_checkpoint_that_does_not_fit_is_refused_under_python_O(sources, faces,
                                                                       tmp_path):
    """A lean resume whose tensors do not fit the run loaded silently under ``python -O``
    (the check was an assert)."""
    from gansweep.core.train import setup, train
    from gansweep.core.trial import transfer_config
    from gansweep.sweep.run.worker import _save_checkpoint

    cfg = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / "run"),
                          d="D(1,2,2)", g="G(1,2,2)", iters=1, batch_size=4, metrics=[])
    state = train(cfg, save=False)
    _save_checkpoint(state, tmp_path)
    ckpt = next(tmp_path.glob("checkpoint_*")) / "checkpoint.pt"
    other = transfer_config(str(sources["dcgan"]), str(faces), str(tmp_path / "run2"),
                            d="D(0,0,5)", g="G(1,2,2)", iters=2, batch_size=4, metrics=[])
    (tmp_path / "other.json").write_text(json.dumps(other.to_dict()))
    code = ("import json, sys\n"
            "from gansweep.core.config import TrainConfig\n"
            "from gansweep.core.errors import GansweepError\n"
            "from gansweep.core.train import setup\n"
            "cfg = TrainConfig.from_dict(json.load(open(sys.argv[1])))\n"
            "try:\n    setup(cfg, sys.argv[2])\n    print('loaded')\n"
            "except GansweepError as e:\n    print('refused:', e)\n")
    run = subprocess.run([sys.executable, "-O", "-c", code, str(tmp_path / "other.json"),
                          str(ckpt)], capture_output=True, text=True)
    assert "checkpoint: a lean checkpoint must hold exactly" in run.stdout, \
        run.stdout + run.stderr[-2000:]
    with pytest.raises(GansweepError, match="lean checkpoint must hold exactly"):
        setup(other, ckpt)


def test_changed_asha_rungs_are_refused(tmp_path):
    from gansweep.sweep.run.scheduler import RobustASHA

    rungs = tmp_path / "asha_rungs.json"
    rungs.write_text(json.dumps({"brackets": [[[3, {}], [1, {}]]], "num_stopped": 0}))
    asha = RobustASHA(str(rungs), time_attr="iteration", metric="score", mode="min", max_t=8,
                      grace_period=2, reduction_factor=2)
    with pytest.raises(GansweepError, match="ASHA rungs are at other iterations"):
        asha.on_trial_add(None, type("T", (), {"trial_id": "a"})())


def test_a_unit_without_a_filter_shift_slot_is_refused():
    net = TransferNet([("plain", nn.Linear(2, 2))], lambda m: None)
    with pytest.raises(GansweepError, match="filter-shift: the unit Linear has no FilterShift"):
        apply_plan(net, ["filter-shift"])


def test_a_shortening_that_changes_a_kept_unit_is_refused(monkeypatch):
    dcgan = ARCHITECTURES.get("dcgan")
    wrong = replace(dcgan, shorten=lambda a, r: replace(a, resolution=r))  # width not scaled
    monkeypatch.setitem(ARCHITECTURES._items, "dcgan", wrong)
    with pytest.raises(GansweepError, match="changes G.b4, which a transfer must keep"):
        cross_resolution(ArchConfig("dcgan", 64, 4, 8), 32)


def test_confirmation_settings_keep_their_conditional_axis(sources, tmp_path):
    """``conditional: [null, projection]`` with the fine-tune baseline: two settings, named
    apart, in the grid, the confirmation and the verdict (the verdict averaged them as one)."""
    from gansweep.core.synthetic import make_domain
    from gansweep.sweep.record.verdict import verdict
    from gansweep.sweep.spec.grid import confirmation_trials, setting_names

    target = tmp_path / "classes"
    make_domain(target / "a", "faces", 4, 32, seed=0)
    make_domain(target / "b", "blobs", 4, 32, seed=0)
    s = parse_spec({**_data(sources, target, partitions=[], baselines=["fine-tune"]),
                    "conditional": [None, "projection"], "confirm": {"top": 1, "seeds": [5, 6]}},
                   tmp_path)
    trials = s.trials()
    names = setting_names(trials)
    assert sorted(names.values()) == ["fine-tune conditional=none",
                                      "fine-tune conditional=projection"]
    _, confirm = confirmation_trials(s, [trials[0].setting_key])
    assert len(confirm) == 4 and [t.index for t in confirm] == [0, 1, 2, 3]
    records = [{"config": t.to_dict(), "status": "finished",
                "last": {"score": 100.0 + 10 * (t.conditional is None) + t.seed}}
               for t in confirm]
    v = verdict(s, records)
    assert [name for name, _ in v.ranking] == ["fine-tune conditional=projection",
                                               "fine-tune conditional=none"]
    assert v.ranking[0][1].n == 2 and v.ranking[0][1].mean == 105.5


# --- issue 34: one identity for a trained thing, and the misleading lines -------------------

def _twin_recording():
    """Two seeds of: the freeze baseline and D(3,0,2)G(3,0,2) (the same plans at L = 5), each
    the better of the two on one seed, both far ahead of fine-tune and D(1,2,2)G(1,2,2)."""
    from gansweep.core.trial import Trial
    from gansweep.sweep.replays.schedulers import RecordedTrial, Recording

    finals = {"freeze": (80.0, 84.0), "D(3,0,2)G(3,0,2)": (82.0, 81.0),
              "fine-tune": (100.0, 101.0), "D(1,2,2)G(1,2,2)": (110.0, 111.0)}
    trials = []
    for label, by_seed in finals.items():
        pair = {"d": label[:8], "g": label[8:]} if label.startswith("D(") else \
            {"baseline": label}
        setting = Trial(label=label, source="src.pt", target="cats", **pair).setting_key
        for seed, final in enumerate(by_seed):
            trials.append(RecordedTrial(f"{label}-{seed}", label, setting, seed,
                                        [{"iteration": i, "fid": final + 10 * (2 - i),
                                          "time_total_s": float(i)} for i in (1, 2)]))
    return Recording("twins", "fid", 2, trials)


def test_a_pair_equal_to_a_baseline_is_one_setting_in_replay():
    """``replay`` compared setting names: a seed whose best trial was the pair while the
    grid's mean favoured the baseline (or the other way) counted as a miss with a non-zero
    regret, though both are one trained thing."""
    from gansweep.sweep.replays.options import parse_variant
    from gansweep.sweep.replays.schedulers import replay_many
    from gansweep.sweep.spec.schema import Scheduler

    rec = _twin_recording()
    assert len(rec.truth()) == 3  # freeze = D(3,0,2)G(3,0,2): one setting, four trials
    summary = replay_many(rec, parse_variant("none", Scheduler()), orders=2, concurrency=[1])
    assert summary.regret == [0.0] * 4 and all(summary.hit), summary
    assert "best picked 100% of 4 replays" in summary.line()


def test_a_pair_equal_to_a_baseline_is_one_setting_in_the_verdict():
    """The verdict ranked the freeze baseline and D(3,0,2)G(3,0,2) as two settings; they are
    one, shown with both names, its interval over both's trials."""
    from types import SimpleNamespace

    from gansweep.sweep.record.verdict import verdict
    from gansweep.sweep.spec.schema import Scheduler

    records = [{"config": {**json.loads(t.setting), "seed": t.seed}, "status": "finished",
                "last": {"score": t.evaluations[-1]["fid"]}} for t in _twin_recording().trials]
    spec = SimpleNamespace(metric="fid", scheduler=Scheduler(), ema_kimg=None, confirm=None)
    v = verdict(spec, records)
    assert [name for name, _ in v.ranking] == ["freeze = D(3,0,2)G(3,0,2)", "fine-tune",
                                               "D(1,2,2)G(1,2,2)"]
    assert len(v.settings["freeze = D(3,0,2)G(3,0,2)"]) == 2  # what 'gansweep best' looks up
    assert v.ranking[0][1].n == 2 and v.ranking[0][1].mean == (81.0 + 82.5) / 2
    assert "fine-tune" in v.against


def test_a_rosinality_source_records_stylegan2s_loss(tmp_path):
    """rosinality's train.py trains with StyleGAN2's loss (non-saturating logistic with
    lazy R1); the import recorded ``bce``, which a transfer then used by default."""
    from tests.conftest import SHARED

    path = SHARED / "reference" / "stylegan2-rosinality-train-ckpt.pt"
    out = cli_in_process("import", "rosinality", path, "--out", tmp_path / "src.pt")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["loss"] == "stylegan2"


def test_dry_run_shows_the_scratch_baseline_initialised_from_scratch(sources, faces, weights,
                                                                     tmp_path):
    """``launch --dry-run`` printed the scratch baseline's g_init and d_init as 'pretrained'
    (the init axes' default), though it trains both nets from random weights."""
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights)
    out = cli_in_process("launch", spec, "--dry-run")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    columns = header.split()
    at = {c: columns.index(c) for c in ("label", "g_init", "d_init")}
    inits = {r.split()[at["label"]]: (r.split()[at["g_init"]], r.split()[at["d_init"]])
             for r in rows if not r.startswith("#")}
    assert inits["scratch"] == ("scratch", "scratch")
    assert inits["fine-tune"] == inits["D(1,2,2)G(3,0,2)"] == ("pretrained", "pretrained")
