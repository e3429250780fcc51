"""Sweep specs: validation errors name the field; expansion counts what the README says
(441 + 5 trials for the dissertation)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gansweep.core.errors import GansweepError
from gansweep.core.trial import trial_config
from gansweep.sweep.spec.files import load_spec
from gansweep.sweep.spec.grid import describe
from gansweep.sweep.spec.validate import parse_spec

ROOT = Path(__file__).resolve().parents[1]


def spec(tmp_path, source, target, **over):
    data = {"name": "t", "source": str(source), "target": str(target),
            "partitions": [["D(1,2,2)", "G(1,2,2)"]], "baselines": ["fine-tune"],
            "budget": {"iters": 4, "eval_every": 2}}
    data.update(over)
    return data


def test_dissertation_dry_run_counts_441_plus_baselines():
    out = subprocess.run([sys.executable, "-m", "gansweep", "launch",
                          str(ROOT / "search_spaces" / "dissertation.yaml"), "--dry-run"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = next(line for line in out.stdout.splitlines() if re.match(r"# \d+ trials:", line))
    assert re.search(r"# 446 trials: 441 partition trials \(441 D x G pairs\) \+ 5 baseline",
                     summary), summary
    assert len([line for line in out.stdout.splitlines() if line.startswith("D(")]) == 441


def test_stylegan2_fewshot_dry_run(monkeypatch):
    """The few-shot spec (StyleGAN2, 8 + 8 units, 10-shot) expands to 16 pairs + 3
    baselines."""
    monkeypatch.chdir(ROOT)
    s = load_spec("stylegan2_fewshot")
    trials = s.trials()
    assert len(trials) == 19 and sum(t.baseline is None for t in trials) == 16
    assert s.arch.name == "stylegan2" and s.metrics == ["fid", "kid", "intra_lpips"]
    assert {t.target_size for t in trials} == {10}


# shipped spec -> the trials its dry run counts: the search's, the confirmation's (None: none)
SHIPPED_COUNTS = {"demo": (6, 12), "denton_plans": (21, None), "denton_sngan_cpu": (17, None),
                  "dissertation": (446, None), "emoji_cpu": (14, None), "emoji_study": (123, None),
                  "price_cpu": (6, None), "stylegan2_cpu": (9, None),
                  "stylegan2_fewshot": (19, None), "wang2018_conditional_cpu": (6, None),
                  "wang2018_init_size": (12, None), "wang2018_init_size_cpu": (12, None),
                  "wang2018_sources_cpu": (4, None)}


def test_every_shipped_spec_has_its_count_here():
    assert set(SHIPPED_COUNTS) == {p.stem for p in (ROOT / "search_spaces").glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(SHIPPED_COUNTS))
def test_shipped_specs_parse(name, monkeypatch):
    """Every shipped spec parses and its dry run counts its trials; the only problems are
    the inputs its header tells the user to make (a source checkpoint they pretrain or
    import, derived data folders, their own data, LPIPS weights), never a spec error."""
    monkeypatch.chdir(ROOT)  # shipped specs' paths are relative to the current directory
    s = load_spec(name)
    search, confirm = SHIPPED_COUNTS[name]
    text = describe(s)
    assert f"# {search} trials: " in text and len(s.trials()) == search
    assert (f"# then the confirmation phase: {confirm} trials" in text) == (confirm is not None)
    for problem in s.problems:  # the shared emoji data, beside the checkout, is there
        field, _, rest = problem.partition(": ")
        assert field in ("source", "target", "lpips_weights") and "does not exist" in rest, \
            problem
        assert "../shared" not in rest, problem


def test_axes_multiply_and_scratch_runs_once(sources, faces, tmp_path):
    second = tmp_path / "second.pt"
    second.write_bytes(sources["dcgan"].read_bytes())
    data = spec(tmp_path, sources["dcgan"], faces, seed=[0, 1], lr=[1e-4, 1e-5],
                baselines=["fine-tune", "scratch"])
    data["source"] = [str(sources["dcgan"]), str(second)]
    trials = parse_spec(data, tmp_path).trials()
    # (1 pair + fine-tune) x 2 sources x 2 seeds x 2 lr, + scratch (source-free) x 2 x 2
    assert len(trials) == 2 * 2 * 2 * 2 + 4
    assert sum(t.baseline == "scratch" for t in trials) == 4


def test_plans_explicit_and_families(sources, faces, tmp_path):
    s = parse_spec(spec(tmp_path, sources["dcgan"], faces, partitions=[], baselines=["scratch"],
                        plans=[{"g": ["freeze", "adafm", "finetune", "finetune", "reinit"],
                                "d": "finetune"},
                               {"label": "keep D", "g": "reinit", "d": "freeze"},
                               {"family": "forward", "n": "all"},
                               {"family": "backward", "mode": "freeze", "n": [1, 2]}]),
                   tmp_path)
    trials = {t.label: t for t in s.trials()}
    # 2 explicit + forward x 2 modes x 5 + backward x 1 mode x 2 + scratch
    assert len(trials) == 2 + 10 + 2 + 1
    explicit = trials["G[FATTR]D[TTTTT]"]
    assert explicit.d_plan == ["finetune"] * 5 and explicit.family is None
    assert trials["keep D"].g_plan == ["reinit"] * 5
    fwd = trials["G forward 2 finetune"]
    assert fwd.g_plan == ["finetune", "finetune", "reinit", "reinit", "reinit"]
    assert fwd.d_plan == ["reinit"] * 5  # D from scratch, as in Denton et al.
    assert (fwd.family, fwd.family_mode, fwd.family_n) == ("forward", "finetune", 2)
    assert trials["G backward 1 freeze"].g_plan == ["reinit"] * 4 + ["freeze"]
    assert trials["G forward 5 freeze"].g_plan == ["freeze"] * 5


@pytest.mark.parametrize("plans, fragment", [
    ([{"g": ["freeze"] * 4, "d": "finetune"}], "plans[0].g: ['freeze', 'freeze', 'freeze', "
                                               "'freeze'] must list one treatment per unit"),
    ([{"g": "froze", "d": "finetune"}], "unknown treatment 'froze'"),
    ([{"family": "sideways"}], "family: 'sideways' is not one of"),
    ([{"family": "forward", "n": [0]}], "n: 0 must be between 1 and L = 5"),
    ([{"family": "forward", "g": "freeze"}], "a family makes G's plans"),
    ([{"family": "forward", "mode": "freeze", "n": [1]},
      {"family": "forward", "mode": ["freeze"], "n": [1, 2]}], "duplicate plan 'G forward 1 "
                                                                "freeze'"),
    ([{"g": "finetune"}], "plans[0]: missing key 'd'"),
    ([{"family": "forward", "nn": 2}], "unknown key 'nn' (did you mean 'n'?)"),
])
def test_plan_errors_name_the_field(sources, faces, tmp_path, plans, fragment):
    with pytest.raises(GansweepError) as e:
        parse_spec(spec(tmp_path, sources["dcgan"], faces, plans=plans), tmp_path)
    assert fragment in str(e.value)


def test_init_axes_skip_impossible_settings(sources, faces, tmp_path):
    s = parse_spec(spec(tmp_path, sources["dcgan"], faces, g_init=["pretrained", "scratch"],
                        partitions={"d": ["D(0,0,5)"], "g": ["G(0,0,5)", "G(1,2,2)"]}),
                   tmp_path)
    labels = sorted((t.label, t.g_init) for t in s.trials())
    assert ("D(0,0,5)G(1,2,2)", "scratch") not in labels
    assert ("D(0,0,5)G(0,0,5)", "scratch") in labels and len(labels) == 5


@pytest.mark.parametrize("over, fragment", [
    ({"baselnes": ["freeze"]}, "unknown key 'baselnes' (did you mean 'baselines'?)"),
    ({"seed": ["zero"]}, "seed: 'zero' is not an integer"),
    ({"seed": [0, 0]}, "seed: duplicate value 0"),
    ({"partitions": [["D(1,2,3)", "G(1,2,2)"]]}, "'D(1,2,3)' sums to 6, but the network has L = 5"),
    ({"baselines": ["freez"]}, "baselines: unknown baseline 'freez' (did you mean 'freeze'?)"),
    ({"budget": {"iters": "many", "eval_every": 2}}, "budget.iters: 'many' is not an integer"),
    ({"budget": {"iters": 4, "eval_every": 2, "batch": 3}}, "budget: unknown key 'batch'"),
    ({"arch": {"name": "dcgan", "resolution": 64}}, "has arch.resolution = 32, but the spec "
                                                      "requires 64"),
    ({"scheduler": {"type": "hyperband"}}, "scheduler.type: 'hyperband'"),
    ({"loss": ["hnge"]}, "unknown loss 'hnge'"),
    ({"training": {"lr_mult": {"fine-tune": 0.1}}},
     "training.lr_mult: unknown treatment 'fine-tune'; valid: adafm, filter-shift, finetune"),
    ({"training": {"label_smoothing": 0.2}, "loss": ["wgan"]},
     "training.label_smoothing: 0.2 needs loss 'bce', not 'wgan'"),
    ({"budget": {"iters": 4, "eval_every": 2, "eval_at_start": "yes"}},
     "budget.eval_at_start: 'yes' is not true or false"),
    ({"confirm": {"top": 3, "seeds": [5]}},
     "confirm.top: 3 must be between 1 and the 2 settings of the search"),
    ({"seed": [0, 1], "confirm": {"top": 1, "seeds": [1, 2]}},
     "confirm.seeds: [1] are also search seeds [0, 1]; confirmation needs fresh seeds"),
    ({"search": {"type": "bayes"}}, "search.type: 'bayes' is not one of grid, structured"),
    ({"search": {"tpye": "grid"}}, "search: unknown key 'tpye' (did you mean 'type'?)"),
    ({"search": {"type": "structured", "max_pairs": 0}}, "search.max_pairs: 0 must be >= 1"),
    ({"search": {"type": "structured", "confirm_top": 10**400}}, "must be in 0..20"),
    ({"budget": {"iters": 10, "eval_every": 5}, "scheduler": {"grace_period": 10**400}},
     "must be less than the budget's 10 iterations"),
    ({"search": {"type": "structured", "fraction": 1.5}},
     "search.fraction: 1.5 must be in (0, 1]"),
    ({"search": {"type": "structured", "stop": "soon"}}, "search.stop: 'soon' is not a number"),
    ({"search": {"type": "structured", "max_pairs": 2, "fraction": 0.5}},
     "search: give max_pairs (2) or fraction (0.5), not both"),
    ({"search": {"max_pairs": 2}}, "search: ['max_pairs'] apply to type 'structured', not 'grid'"),
    ({"search": {"type": "structured"}, "partitions": []},
     "search.type: 'structured' needs a grid of D x G partition pairs"),
    ({"seed": [2**70]}, "seed: 1180591620717411303424 must be an integer in [0, 4294967295]"),
    ({"seed": [-1]}, "seed: -1 must be an integer in [0, 4294967295]"),
    ({"resources": {"cpu": float("nan")}}, "resources: cpu must be a number > 0"),
    ({"resources": {"gpu": float("inf")}}, "gpu a number >= 0, got cpu 1.0, gpu inf"),
    ({"budget": {"iters": 0, "eval_every": 2}}, "budget.iters: 0 must be an integer >= 1"),
    ({"budget": {"iters": 4}}, "budget: missing required key 'eval_every'"),
    ({"budget": {"iters": 4, "eval_every": 2, "fid_samples": 1}},
     "fid_samples: 1 must be an integer >= 2"),
    ({"ema_kimg": float("inf")}, "ema_kimg: inf must be a positive number"),
    ({"training": {"lr_mult": {"finetune": float("nan")}}}, "must be a positive number"),
    ({"freeze_d_depth": 2}, "freeze_d_depth: only the freeze-d baseline has it"),
    ({"budget": {"iters": 10, "eval_every": 5}, "scheduler": {"grace_period": 10}},
     "scheduler.grace_period: 10 must be less than the budget's 10 iterations"),
])
def test_spec_errors_name_the_field(sources, faces, tmp_path, over, fragment):
    with pytest.raises(GansweepError) as e:
        parse_spec(spec(tmp_path, sources["dcgan"], faces, **over), tmp_path)
    assert fragment in str(e.value)


def test_missing_files_refused_by_launch(sources, faces, tmp_path):
    s = parse_spec(spec(tmp_path, sources["dcgan"], tmp_path / "nope", arch={
        "name": "dcgan", "resolution": 32}), tmp_path)
    assert s.problems and "target: " in s.problems[0]
    from gansweep.sweep.run.driver import launch

    with pytest.raises(GansweepError, match="target: .* does not exist"):
        launch(s, str(tmp_path / "storage"))


def test_same_name_launch_refused(sources, faces, tmp_path):
    """A name that holds a sweep is refused with the resume line; a folder of that name that
    holds no sweep is in the way, and nothing suggests resuming it."""
    from gansweep.sweep.run.driver import launch

    s = parse_spec(spec(tmp_path, sources["dcgan"], faces), tmp_path)
    (tmp_path / "storage" / "t").mkdir(parents=True)
    (tmp_path / "storage" / "t" / "leftover.txt").write_text("x")
    with pytest.raises(GansweepError, match="holds no sweep") as e:
        launch(s, str(tmp_path / "storage"))
    assert "resume" not in str(e.value)
    (tmp_path / "storage" / "t" / "gansweep").mkdir()
    (tmp_path / "storage" / "t" / "gansweep" / "trials.json").write_text("{}")
    with pytest.raises(GansweepError, match="already exists.*gansweep resume"):
        launch(s, str(tmp_path / "storage"))


@pytest.mark.parametrize("target, problem", [
    ("file", "target: .*: not a directory"), ("empty", "target: .*: no images found"),
    ("faces", "target_size: 1000 is more than the 40 images of")])
def test_a_target_without_the_images_it_needs_is_a_problem(sources, faces, tmp_path, target,
                                                           problem):
    """A dry run warns of it and a launch refuses it, before anything is written."""
    paths = {"file": tmp_path / "a-file.png", "empty": tmp_path / "empty", "faces": faces}
    paths["file"].write_bytes(b"x")
    paths["empty"].mkdir()
    s = parse_spec(spec(tmp_path, sources["dcgan"], paths[target], target_size=[1000]),
                   tmp_path)
    assert any(re.match(problem, p) for p in s.problems), s.problems


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(GansweepError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text(yaml.safe_dump({"name": "x"}))
    with pytest.raises(GansweepError, match="missing required key 'target'"):
        load_spec(bad)


def test_a_lower_resolution_spec_transfers_across_resolutions(sources, faces, tmp_path):
    """arch.resolution below the source's: the trials transfer to it (models.cross_resolution),
    their configs record the new units."""
    s = parse_spec(spec(tmp_path, sources["dcgan64"], faces,
                        arch={"name": "dcgan", "resolution": 32}), tmp_path)
    assert (s.arch.resolution, s.arch.width) == (32, 8)  # the 64 px source's width 4, doubled
    cfg = trial_config(s.template, s.trials()[0], str(tmp_path), "cpu")  # as a trial makes it
    assert cfg.new_units == ["G.rgb", "D.rgb"] and cfg.arch == s.arch
