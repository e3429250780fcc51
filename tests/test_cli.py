"""The CLI as a user runs it: results as one JSON line, progress on stderr, bad inputs as
one clear line."""
import io
import json
import os

import pytest

from gansweep.core.checkpoint import load_checkpoint
from gansweep.core.progress import Progress
from tests.helpers import assert_one_clear_line, cli, cli_in_process


def test_partitions_lists_21():
    out = cli("partitions", "--units", "5", "--net", "G")
    assert out.returncode == 0
    lines = [line for line in out.stdout.splitlines() if line.startswith("G(")]
    assert len(lines) == 21
    assert "G(1,2,2)\tfinetune finetune adafm adafm freeze" in out.stdout


def test_transfer_prints_json_and_its_progress(sources, faces, tmp_path):
    """stdout: the result, one JSON line; stderr, not a terminal: one progress line per
    evaluation (count, rate, losses); with --quiet, nothing."""
    args = ["transfer", "--source", sources["dcgan"], "--data", faces, "--d", "D(1,2,2)",
            "--g", "G(1,2,2)", "--iters", "2", "--eval-every", "1", "--batch-size", "8",
            "--metrics", "none"]
    out = cli(*args, "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["iterations"] == 2 and result["label"] == "D(1,2,2)G(1,2,2)"
    assert result["trainable_g"] > 0 and result["images_per_s"] > 0
    lines = out.stderr.strip().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["D(1,2,2)G(1,2,2): 1/2 it",
                                                       "D(1,2,2)G(1,2,2): 2/2 it"], lines
    assert all("it/s" in line and "d_loss" in line and "g_loss" in line for line in lines)
    quiet = cli_in_process(*args, "--out", tmp_path / "quiet", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_progress_bar_on_a_terminal():
    """On a terminal: one bar, redrawn, with the latest values; an evaluation's metrics join
    it instead of printing a line."""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    with Progress(3, "it", "run", stream=term) as progress:
        for _ in range(3):
            progress.update(1, d_loss=0.5)
        progress.milestone(fid=123.4)
    text = term.getvalue()
    assert "\r" in text and "3/3" in text and "d_loss 0.5 fid 123.4" in text


def test_pretrain_records_its_data_absolute(faces, tmp_path):
    """A source records the folder it was trained on as an absolute path: a source-choice
    sweep and the classifier metric read it back from other working folders."""
    out = cli("pretrain", "--data", os.path.relpath(faces, tmp_path), "--out", "src.pt",
              "--resolution", "32", "--width", "4", "--iters", "1", "--batch-size", "8",
              "--metrics", "none", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert load_checkpoint(tmp_path / "src.pt")["config"]["data"] == str(faces.resolve())


def test_conditional_transfer_from_the_command_line(sources, faces, blobs, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "faces").symlink_to(faces)
    (target / "blobs").symlink_to(blobs)
    out = cli("transfer", "--source", sources["dcgan"], "--data", target, "--conditional",
              "projection", "--baseline", "freeze", "--iters", "2", "--batch-size", "8",
              "--metrics", "none", "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["arch"]["num_classes"] == 2 and config["arch"]["cond_head"] == "projection"


def _bad_inputs(sources, faces, tmp_path):
    common = ["--iters", "1", "--metrics", "none", "--out", tmp_path / "o"]
    return {
        "wrong partition sum": (["transfer", "--source", sources["dcgan64"], "--data", faces,
                                 "--d", "D(1,2,3)", "--g", "G(1,2,2)", *common],
                                "'D(1,2,3)' sums to 6, but the network has L = 5"),
        "other architecture": (["transfer", "--source", sources["resnet"], "--data", faces,
                                "--arch", "dcgan", "--baseline", "fine-tune", *common],
                               "architecture is 'resnet', expected 'dcgan'"),
        "unknown baseline": (["transfer", "--source", sources["dcgan"], "--data", faces,
                              "--baseline", "finetune", *common], "unknown baseline"),
    }


@pytest.mark.parametrize("case", ["wrong partition sum", "other architecture",
                                  "unknown baseline"])
def test_bad_inputs_one_clear_line(sources, faces, tmp_path, case):
    args, fragment = _bad_inputs(sources, faces, tmp_path)[case]
    assert_one_clear_line(cli(*args), args[0], fragment)


# --- ls, best, sample, and where a named sweep is looked for ------------------------------

def test_ls_and_best_hand_over_the_winner(tiny_sweep, tmp_path):
    """`ls` lists the tiny sweep (finished, 11/11, the verdict's winner); `best --json`
    names that winner, a checkpoint that exists, a spec fragment that runs that setting
    alone, and a sample command that works."""
    import yaml

    from gansweep.core.trial import Trial
    from gansweep.sweep.record.state import SweepState
    from gansweep.sweep.record.verdict import verdict
    from gansweep.sweep.spec.files import load_sweep_spec
    from gansweep.sweep.spec.validate import parse_spec

    sweep_dir, _ = tiny_sweep
    storage = sweep_dir.parent
    state = SweepState.load(sweep_dir)
    found = verdict(load_sweep_spec(sweep_dir), list(state.trials.values()))
    winner = found.winner
    assert f"winner: {winner}, " in cli_in_process("status", sweep_dir).stdout
    rows = json.loads(cli_in_process("ls", "--storage", storage, "--json").stdout)
    assert [(r["name"], r["state"], r["done"], r["expected"], r["winner"]) for r in rows] == \
        [("tiny", "finished", 11, 11, winner)]
    table = cli_in_process("ls", "--storage", storage).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "TRIALS", "WINNER", "SO", "FAR", "LAST",
                                "CHANGE"]
    assert table[1].startswith("tiny  finished  11/11  ") and f"  {winner} " in table[1]

    out = cli_in_process("best", "tiny", "--storage", storage, "--json")
    assert out.returncode == 0, out.stderr
    best = json.loads(out.stdout)
    assert best["setting"] == winner and not best["confirmed"]
    assert os.path.isfile(best["checkpoint"]) and best["checkpoint"].startswith(str(sweep_dir))
    assert best["interval"]["seeds"] == len(best["seeds"]) >= 1
    recorded = yaml.safe_load((sweep_dir / "gansweep" / "sweep.yaml").read_text())
    alone = parse_spec({**{k: recorded[k] for k in ("name", "budget", "metric", "scheduler")},
                        **best["spec"]}, tmp_path, "fragment")
    winner_trial = next(Trial.from_dict(t["config"]) for t in
                        SweepState.load(sweep_dir).trials.values()
                        if t["trial_id"] == best["seeds"][0]["trial_id"])
    assert {t.setting_key for t in alone.trials()} == {winner_trial.setting_key}
    text = cli_in_process("best", sweep_dir).stdout
    assert f"winner of tiny: {winner}" in text and best["sample"] in text

    argv = best["sample"].split()[1:]
    assert argv[0] == "sample"
    png = tmp_path / "best.png"
    sampled = cli_in_process(*argv[:-2], "--out", png, "--n", "4", "--device", "cpu")
    assert sampled.returncode == 0, sampled.stderr
    assert json.loads(sampled.stdout)["images"] == 4
    from PIL import Image

    assert Image.open(png).size == (2 + 2 * 34, 2 + 2 * 34)  # 2 x 2 of 32 px, 2 px padding


def test_a_name_is_looked_for_in_the_storage_only(tiny_sweep, tmp_path, monkeypatch):
    """--storage (else $GANSWEEP_STORAGE) decides where a name is looked for, even where
    the current folder holds a folder of that name; a path is a path only when written as
    one; a storage that is a file is one line that suggests no resume."""
    sweep_dir, _ = tiny_sweep
    storage = sweep_dir.parent
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # a local folder of the sweep's name
    assert "sweep tiny at" in cli_in_process("status", "tiny", "--storage", storage).stdout
    monkeypatch.setenv("GANSWEEP_STORAGE", str(storage))
    assert "sweep tiny at" in cli_in_process("status", "tiny").stdout
    local = cli_in_process("status", "./tiny")
    assert_one_clear_line(local, "status", "no sweep there (looked for tiny/gansweep")
    (tmp_path / "file").write_text("x")
    for command in ("status", "resume", "report", "best"):
        out = cli_in_process(command, "tiny", "--storage", tmp_path / "file")
        assert_one_clear_line(out, command, "is a file, not a folder of sweeps")
        assert "resume" not in out.stderr.split("error:", 1)[1]
    missing = cli_in_process("resume", "nothing", "--storage", storage)
    assert_one_clear_line(missing, "resume", f"no sweep there in the storage {storage}")
    assert "resume" not in missing.stderr.split("error:", 1)[1]
    assert_one_clear_line(cli_in_process("ls", "--storage", tmp_path / "file"), "ls",
                          "is a file")
    assert "no sweeps in" in cli_in_process("ls", "--storage", tmp_path / "empty").stdout


def test_report_on_a_sweep_that_never_ran_says_what_to_run(tmp_path):
    """A sweep whose launch stopped before its first trial (killed while it made its
    references, say): `report` says so and names the resume; `status` and `ls` too."""
    from gansweep.sweep.record.state import SweepState
    from gansweep.sweep.spec.files import SPEC_FILE

    sweep_dir = tmp_path / "sweeps" / "never"
    (sweep_dir / "gansweep").mkdir(parents=True)
    (sweep_dir / SPEC_FILE).write_text(json.dumps({
        "name": "never", "source": "/src.pt", "target": str(tmp_path),
        "arch": {"name": "dcgan", "resolution": 32}, "baselines": ["fine-tune"],
        "budget": {"iters": 4, "eval_every": 2}, "confirm": {"top": 1, "seeds": [5]}}))
    SweepState.create(sweep_dir, "never", 1, 4).save()
    resume = f"'gansweep resume {sweep_dir}'"
    assert_one_clear_line(cli_in_process("report", "never", "--storage", tmp_path / "sweeps"),
                          "report", f"has run no trial yet (its launch stopped before the "
                                    f"first one): nothing to report; start it with {resume}")
    assert "no trial has started yet" in cli_in_process("status", sweep_dir).stdout
    rows = json.loads(cli_in_process("ls", "--storage", tmp_path / "sweeps", "--json").stdout)
    assert [(r["name"], r["state"], r["done"], r["expected"]) for r in rows] == \
        [("never", "not started", 0, 1)]


# --- first-hour edges -------------------------------------------------------------------

def test_dry_run_names_the_sweep_its_storage_and_its_cost(sources, faces, weights, tmp_path):
    from tests.helpers import write_spec

    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights,
                      confirm={"top": 1, "seeds": [5, 6]})
    out = cli_in_process("launch", spec, "--storage", tmp_path / "store", "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"# sweep 'tiny', stored at {tmp_path / 'store' / 'tiny'}" in lines
    # 6 pairs + 3 baselines of 6 iterations; the confirmation: the best pair and the 3
    # baselines on 2 seeds
    assert "# cost: at most 54 trial-iterations in the search (9 trials x 6 iterations; ASHA " \
           "stops some early) + at most 48 in the confirmation (8 trials x 6) = 102 " \
           "trial-iterations" in lines, lines[-3:]
    assert not (tmp_path / "store").exists()


def test_yaml_errors_and_a_grace_period_asha_cannot_use(sources, faces, weights, tmp_path):
    from tests.helpers import write_spec

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbudget: {iters: 4\nsource: [a, b\n")
    assert_one_clear_line(cli_in_process("launch", bad, "--dry-run"), "launch",
                          "not valid YAML at line 3, column 7: expected ',' or '}'")
    spec = write_spec(tmp_path / "spec.yaml", sources["dcgan"], faces, weights,
                      scheduler={"type": "asha", "grace_period": 6, "reduction_factor": 3})
    assert_one_clear_line(cli_in_process("launch", spec, "--dry-run"), "launch",
                          "scheduler.grace_period: 6 must be less than the budget's 6 iterations")


def test_relative_paths_of_a_spec(tmp_path, monkeypatch):
    """A spec given by its path: relative to its folder, from wherever it is launched; a
    shipped spec given by name: relative to the current folder (README, 'Sweeps')."""
    from gansweep.sweep.spec.files import load_spec, shipped_dir

    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "specs").mkdir()
    elsewhere.mkdir()
    copy = tmp_path / "specs" / "demo.yaml"
    copy.write_text((shipped_dir() / "demo.yaml").read_text())
    monkeypatch.chdir(elsewhere)
    assert load_spec("demo").targets == [str(elsewhere / "data" / "cats")]
    assert load_spec("../specs/demo.yaml").targets == [str(tmp_path / "specs" / "data" /
                                                           "cats")]
    out = cli_in_process("launch", "demo", "--dry-run")
    assert f"({elsewhere / 'source.pt'})" in out.stderr


def test_help_pages_have_a_description_defaults_and_choices(capsys):
    from gansweep.sweep.cli.main import COMMANDS, build_parser

    for name, command in COMMANDS.items():
        with pytest.raises(SystemExit):
            build_parser().parse_args([name, "--help"])
        page = capsys.readouterr().out
        assert f"gansweep {name}: {command.help}." in " ".join(page.split()), name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["partitions", "--help"])
    page = capsys.readouterr().out
    assert "--net {D,G,both}" in page and "(default: both)" in page
    assert "(default: adafm)" in page


def test_readme_lists_every_shipped_spec_and_its_sections():
    import re
    from pathlib import Path

    from gansweep.sweep.spec.files import shipped_specs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split(f"The {len(shipped_specs())} shipped specs", 1)[1].split("\n\n")[0]
    assert set(re.findall(r"`(\w+)`", block)) == set(shipped_specs())
    headings = re.findall(r"^## (.+)$", readme, flags=re.M)
    contents = re.findall(r"^- \[(.+?)\]\(#[\w-]+\)$", readme, flags=re.M)
    assert contents == headings


def test_demo_pretraining_prints_its_progress():
    """Not on a terminal: a line every tenth of the source's run (it evaluates only at its
    end)."""
    from gansweep.sweep.cli.demo import _Pretraining

    log = io.StringIO()
    with _Pretraining(50, "it", "[demo] pretrain", stream=log) as progress:
        for _ in range(50):
            progress.update(1, d_loss=0.5)
    lines = log.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == \
        [f"[demo] pretrain: {n}/50 it" for n in range(5, 50, 5)]


def test_the_advice_of_an_unconfirmed_winner_matches_the_spec(tmp_path):
    """A search winner of a spec with confirm: says the confirmation has not run yet (and
    how to run it), not to add confirm: to the spec; without confirm:, it says to add it."""
    from gansweep.core.trial import Trial
    from gansweep.sweep.record.verdict import verdict
    from gansweep.sweep.spec.validate import parse_spec

    data = {"name": "v", "source": "/src.pt", "target": str(tmp_path),
            "arch": {"name": "dcgan", "resolution": 32}, "baselines": ["fine-tune"],
            "budget": {"iters": 4, "eval_every": 2}}
    records = [{"config": Trial("fine-tune", "/src.pt", str(tmp_path), baseline="fine-tune",
                                seed=s).to_dict(), "status": "finished",
                "last": {"score": 100.0 + s}} for s in (0, 1)]
    with_confirm = parse_spec({**data, "confirm": {"top": 1, "seeds": [5]}}, tmp_path, "s",
                              read_sources=False)
    text = verdict(with_confirm, records).text()
    assert "the spec's confirmation phase has not run; 'gansweep resume' runs it" in text
    assert "add 'confirm:" not in text
    plain = parse_spec(data, tmp_path, "s", read_sources=False)
    assert "add 'confirm: {top: k, seeds: [...]}' to the spec" in verdict(plain, records).text()
