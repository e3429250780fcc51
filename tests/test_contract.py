"""The command contract (the README's "bad input"): for every subcommand and every option,
a wrong type, an out-of-range number, a missing or unreadable file, an empty or malformed
value is refused with exit 2 and exactly one line on stderr, ``gansweep CMD: error: ...``,
naming the option, and nothing is written. One row per case in ``ROWS``; a guard fails when
the parser (``sweep.cli.build_parser``) has a subcommand or an option without a row, so a new
option states its bad values here. Each case runs ``main`` in this process, in an empty
working directory, with training and Ray made to fail loudly should a case get that far."""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest

from gansweep.sweep.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "benchmarks" / "recordings" / "emoji-study-s0.json.gz"

# Placeholders in the rows, filled by the ``world`` fixture: a source checkpoint, a target
# folder, a spec, a recorded sweep, a file that is no checkpoint, a rosinality checkpoint.
SRC, DATA, SPEC, SWEEP, GARBAGE, ROSI, REC = ("{src}", "{data}", "{spec}", "{sweep}",
                                               "{garbage}", "{rosi}", "{rec}")
# A folder that exists (to give where a file is written), a sweep whose record is damaged,
# a spec with a key given twice.
ROOT_DIR, BROKEN, TWICE = "{root}", "{broken}", "{twice}"
SEED_RANGE = "in [0, 4294967295]"
RUN = ["--iters", "1", "--batch-size", "2", "--metrics", "none", "--device", "cpu", "--quiet"]
FINE = ["--baseline", "fine-tune"]  # a transfer's setting, where the case is not about it

# The arguments each command is given besides the case's own: valid, and cheap, so that the
# case's value is the one thing wrong.
BASE = {
    "pretrain": ["--data", DATA, "--out", "o.pt", *RUN],
    "transfer": ["--source", SRC, "--data", DATA, "--out", "run", *RUN],  # + FINE (the rows)
    "fid": [DATA, DATA, "--metrics", "fid", "--device", "cpu", "--quiet"],
    "import": ["rosinality", ROSI, "--out", "o.pt"],
    "split": [DATA, "--out", "parts"],
    "partitions": ["--units", "5"],
    "sample": [SRC, "--out", "s.png", "--n", "1", "--device", "cpu"],
    "specs": [],
    "launch": [SPEC, "--dry-run"],
    "resume": [SWEEP],
    "status": [SWEEP],
    "report": [SWEEP, "--quiet"],
    "replay": [REC, "--orders", "1", "--concurrency", "1"],
    "demo": [],
    "ls": [],
    "best": [SWEEP],
}

# (command, option) -> [(the bad arguments, what the line must also say)]. ``None`` as the
# option: the command itself (an unknown option). The line must name the option too (checked
# by ``named``).
RUN_ROWS = {
    "--lr": [(["--lr", "x"], "invalid float"), (["--lr", "-1"], "must be a positive"),
             (["--lr", "nan"], "must be a positive"), (["--lr", "inf"], "must be a positive")],
    "--batch-size": [(["--batch-size", "two"], "invalid int"),
                     (["--batch-size", "0"], "must be a positive")],
    "--iters": [(["--iters", "1.5"], "invalid int"), (["--iters", "0"], "must be a positive")],
    "--eval-every": [(["--eval-every", "-1"], ">= 0")],
    "--fid-real": [(["--fid-real", "0"], ">= 2"), (["--fid-real", "1"], ">= 2")],
    "--augment": [(["--augment", "wobble"], "wobble")],
    "--seed": [(["--seed", "s"], SEED_RANGE), (["--seed", "-1"], SEED_RANGE),
               (["--seed", "99999999999999999999999"], SEED_RANGE)],
    "--n-critic": [(["--n-critic", "0"], "must be a positive")],
    "--label-smoothing": [(["--label-smoothing", "2"], "[0, 1)"),
                          (["--label-smoothing", "nan"], "[0, 1)")],
    "--label-noise": [(["--label-noise", "-0.1"], "[0, 1)")],
    "--r1-gamma": [(["--r1-gamma", "-1"], ">= 0"), (["--r1-gamma", "nan"], ">= 0"),
                   (["--r1-gamma", "1"], "needs loss 'stylegan2'")],
    "--path-length": [(["--path-length", "-1"], ">= 0"), (["--path-length", "inf"], ">= 0")],
    "--ema-kimg": [(["--ema-kimg", "-1"], "positive"), (["--ema-kimg", "nan"], "positive"),
                   (["--ema-kimg", "inf"], "positive")],
    "--inception-weights": [(["--inception-weights", "missing.pth", "--metrics", "fid"],
                             "missing.pth")],
    "--fid-samples": [(["--fid-samples", "0"], ">= 2"), (["--fid-samples", "1"], ">= 2")],
    "--metrics": [(["--metrics", "fid,nope"], "nope"), (["--metrics", ","], "names no metric")],
    "--lpips-weights": [(["--lpips-weights", "missing.pth", "--metrics", "intra_lpips"],
                         "missing.pth"),
                        (["--lpips-weights", GARBAGE, "--metrics", "intra_lpips"],
                         "not a readable LPIPS weights")],
    "--cache-dir": [(["--cache-dir", ""], "empty"), (["--cache-dir", GARBAGE], "is a file")],
    "--device": [(["--device", "gpu9"], "gpu9"), (["--device", "cuda:99"], "CUDA GPU")],
    "--quiet": [(["--quiet=yes"], "ignored explicit argument")],
    "--compile": [(["--compile=yes"], "ignored explicit argument"),
                  (["--compile", "--loss", "wgan-gp"], "cannot capture loss 'wgan-gp'")],
}

ROWS: dict[tuple[str, str | None], list[tuple[list[str], str]]] = {
    **{("pretrain", opt): rows for opt, rows in RUN_ROWS.items()},
    ("pretrain", None): [(["--bogus"], "unrecognized arguments")],
    ("pretrain", "--data"): [(["--data", "nowhere"], "nowhere")],
    ("pretrain", "--out"): [(["--out", ""], "empty"), (["--out", "."], "is a folder"),
                            (["--out", ROOT_DIR], "is a folder")],
    ("pretrain", "--arch"): [(["--arch", "vgg"], "vgg")],
    ("pretrain", "--resolution"): [(["--resolution", "-32"], "resolution"),
                                   (["--resolution", "33"], "resolution"),
                                   (["--resolution", "x"], "invalid int")],
    ("pretrain", "--width"): [(["--width", "0"], "width"),
                              (["--width", "100000000"], "in [1, 8192]")],
    ("pretrain", "--z-dim"): [(["--z-dim", "0"], "z_dim")],
    ("pretrain", "--d-norm"): [(["--d-norm", "group"], "group")],
    ("pretrain", "--d-width"): [(["--d-width", "-4"], "d_width")],
    ("pretrain", "--mapping-layers"): [(["--mapping-layers", "x"], "invalid int"),
                                       (["--arch", "stylegan2", "--resolution", "32",
                                         "--loss", "stylegan2", "--mapping-layers", "0"],
                                        "mapping_layers")],
    ("pretrain", "--loss"): [(["--loss", "l2"], "l2")],
    ("pretrain", "--resume"): [(["--resume", "missing.pt"], "missing.pt"),
                               (["--resume", GARBAGE], "garbage"),
                               (["--resume", SRC, "--width", "9"], "other networks")],
    **{("transfer", opt): [([*FINE, *args], says) for args, says in rows]
       for opt, rows in RUN_ROWS.items()},
    ("transfer", None): [([*FINE, "--bogus"], "unrecognized arguments")],
    ("transfer", "--source"): [([*FINE, "--source", "missing.pt"], "missing.pt"),
                               (["--source", GARBAGE], "garbage")],
    ("transfer", "--data"): [([*FINE, "--data", "nowhere"], "nowhere")],
    ("transfer", "--d"): [(["--d", "D(1,2)", "--g", "G(1,2,2)"], "D(1,2)")],
    ("transfer", "--g"): [(["--d", "D(1,2,2)", "--g", "G(9,9,9)"], "G(9,9,9)")],
    ("transfer", "--baseline"): [(["--baseline", "finetune"], "finetune")],
    ("transfer", "--modulation"): [([*FINE, "--modulation", "wobble"], "wobble")],
    ("transfer", "--arch"): [([*FINE, "--arch", "resnet"], "resnet")],
    ("transfer", "--resolution"): [([*FINE, "--resolution", "0"], "resolution"),
                                   ([*FINE, "--resolution", "7"], "resolution"),
                                   ([*FINE, "--resolution", "128"], "resolution")],
    ("transfer", "--freeze-d-depth"): [(["--baseline", "freeze-d", "--freeze-d-depth", "-1"],
                                        "freeze_d_depth"),
                                       (["--baseline", "freeze-d", "--freeze-d-depth", "99"],
                                        "freeze_d_depth"),
                                       ([*FINE, "--freeze-d-depth", "2"],
                                        "only with --baseline freeze-d")],
    ("transfer", "--g-init"): [([*FINE, "--g-init", "random"], "random")],
    ("transfer", "--d-init"): [([*FINE, "--d-init", ""], "d-init")],
    ("transfer", "--target-size"): [([*FINE, "--target-size", "0"], "target_size"),
                                    ([*FINE, "--target-size", "-3"], "target_size")],
    ("transfer", "--conditional"): [([*FINE, "--conditional", "film"], "invalid choice")],
    ("transfer", "--classifier-negatives"): [([*FINE, "--classifier-negatives", "nowhere",
                                               "--metrics", "classifier"], "nowhere")],
    ("transfer", "--loss"): [([*FINE, "--loss", "l2"], "l2")],
    ("transfer", "--lr-mult"): [([*FINE, "--lr-mult", "finetune"], "TREATMENT=NUMBER"),
                                ([*FINE, "--lr-mult", "finetune=-1"], "positive"),
                                ([*FINE, "--lr-mult", "finetune=nan"], "positive"),
                                ([*FINE, "--lr-mult", "reinit=inf"], "positive"),
                                ([*FINE, "--lr-mult", ","], "names no treatment")],
    ("transfer", "--eval-at-start"): [([*FINE, "--eval-at-start=1"],
                                        "ignored explicit argument")],
    ("transfer", "--bn-stats"): [([*FINE, "--bn-stats", "frozen"], "frozen")],
    ("transfer", "--out"): [([*FINE, "--out", ""], "empty"),
                            ([*FINE, "--out", GARBAGE], "is a file")],
    ("transfer", "--resume"): [([*FINE, "--resume"], "checkpoint.pt")],
    ("fid", None): [(["--bogus"], "unrecognized arguments")],
    ("fid", "dir_a"): [(["nowhere", DATA], "nowhere")],
    ("fid", "dir_b"): [([DATA, "nowhere"], "nowhere")],
    ("fid", "--inception-weights"): [(["--inception-weights", "missing.pth"], "missing.pth"),
                                     (["--inception-weights", GARBAGE], "garbage")],
    ("fid", "--resolution"): [(["--resolution", "0"], "resolution"),
                              (["--resolution", "99999"], "in [1, 1024]")],
    ("fid", "--alpha"): [(["--alpha", "black"], "black")],
    ("fid", "--metrics"): [(["--metrics", "nope"], "nope")],
    ("fid", "--device"): [(["--device", "tpu"], "tpu"), (["--device", "cuda"], "CUDA GPU")],
    ("fid", "--quiet"): [(["--quiet=1"], "ignored explicit argument")],
    ("import", None): [(["--bogus"], "unrecognized arguments")],
    ("import", "format"): [(["pickle", ROSI, "--out", "o.pt"], "pickle")],
    ("import", "g"): [(["rosinality", "missing.pt", "--out", "o.pt"], "missing.pt"),
                      (["rosinality", GARBAGE, "--out", "o.pt"], "garbage")],
    ("import", "d"): [(["rosinality", ROSI, ROSI, "--out", "o.pt"], "give no D file")],
    ("import", "--out"): [(["--out", ""], "empty"), (["--out", ROOT_DIR], "is a folder")],
    ("import", "--generator"): [(["--generator", "G_ema"], "--generator")],
    ("import", "--trust-pickle"): [(["--trust-pickle=no"], "ignored explicit argument")],
    ("split", None): [(["--bogus"], "unrecognized arguments")],
    ("split", "folder"): [(["nowhere", "--out", "parts"], "nowhere")],
    ("split", "--fraction"): [(["--fraction", "1.5"], "fraction"),
                              (["--fraction", "0"], "fraction"), (["--fraction", "1"], "fraction"),
                              (["--fraction", "nan"], "fraction"),
                              (["--fraction", "x"], "invalid float")],
    ("split", "--seed"): [(["--seed", "1e3"], SEED_RANGE), (["--seed", "-1"], SEED_RANGE)],
    ("split", "--out"): [(["--out", ""], "empty"), (["--out", GARBAGE], "is a file"),
                         (["--out", DATA + "/parts"], "inside the folder it splits")],
    ("partitions", None): [(["--bogus"], "unrecognized arguments")],
    ("partitions", "--units"): [(["--units", "0"], "in [1, 32]"),
                                (["--units", "-5"], "in [1, 32]"),
                                (["--units", "five"], "in [1, 32]"),
                                (["--units", "99999999"], "in [1, 32]")],
    ("partitions", "--net"): [(["--net", "E"], "invalid choice")],
    ("partitions", "--modulation"): [(["--modulation", "wobble"], "wobble")],
    ("sample", None): [(["--bogus"], "unrecognized arguments")],
    ("sample", "checkpoint"): [(["missing.pt"], "missing.pt"), ([GARBAGE], "garbage")],
    ("sample", "--out"): [(["--out", ""], "empty"), (["--out", "x.gif"], "not a .png or .jpg"),
                          (["--out", ROOT_DIR], "is a folder")],
    ("sample", "--n"): [(["--n", "0"], "in [1, 4096]"), (["--n", "99999999999"], "in [1, 4096]")],
    ("sample", "--seed"): [(["--seed", "x"], SEED_RANGE)],
    ("sample", "--device"): [(["--device", "tpu"], "tpu"), (["--device", "cuda:0"], "CUDA GPU")],
    ("specs", None): [(["--bogus"], "unrecognized arguments")],
    ("launch", None): [(["--bogus"], "unrecognized arguments")],
    ("launch", "spec"): [(["missing.yaml", "--dry-run"], "missing.yaml"),
                         ([GARBAGE, "--dry-run"], "garbage"),
                         ([REC, "--dry-run"], "not a text file"),
                         ([TWICE, "--dry-run"], "given twice")],
    ("launch", "--name"): [(["--name", "../x"], "folder name"), (["--name", ""], "empty value"),
                           (["--name", " "], "empty value")],
    ("launch", "--storage"): [(["--storage", ""], "empty value"),
                              (["--storage", GARBAGE], "is a file")],
    ("launch", "--address"): [(["--address", " "], "empty value")],
    ("launch", "--dry-run"): [(["--dry-run=no"], "ignored explicit argument")],
    ("resume", None): [(["--bogus"], "unrecognized arguments")],
    ("resume", "sweep"): [(["nowhere"], "no sweep there")],
    ("resume", "--storage"): [(["nowhere", "--storage", "missing-storage"], "missing-storage")],
    ("resume", "--address"): [(["--address", ""], "empty")],
    ("resume", "--skip-errored"): [(["--skip-errored=1"], "ignored explicit argument")],
    ("status", None): [(["--bogus"], "unrecognized arguments")],
    ("status", "sweep"): [(["nowhere"], "no sweep there"), ([BROKEN], "not a sweep's record")],
    ("status", "--storage"): [(["nowhere", "--storage", "missing-storage"], "missing-storage")],
    ("report", None): [(["--bogus"], "unrecognized arguments")],
    ("report", "sweep"): [(["nowhere"], "no sweep there")],
    ("report", "--storage"): [(["nowhere", "--storage", "missing-storage"], "missing-storage")],
    ("report", "--out"): [(["--out", ""], "empty"), (["--out", "r.pt"], "not a .html"),
                          (["--out", ROOT_DIR], "is a folder")],
    ("report", "--fid-threshold"): [(["--fid-threshold", "x"], "is not a number > 0"),
                                    (["--fid-threshold", "-5"], "is not a number > 0"),
                                    (["--fid-threshold", "nan"], "is not a number > 0")],
    ("report", "--quiet"): [(["--quiet=1"], "ignored explicit argument")],
    ("replay", None): [(["--bogus"], "unrecognized arguments")],
    ("replay", "sweep"): [(["nowhere"], "no sweep there"), ([GARBAGE], "not a recording")],
    ("replay", "--storage"): [(["nowhere", "--storage", "missing-storage"], "missing-storage")],
    ("replay", "--export"): [(["--export", ""], "empty"), (["--export", ROOT_DIR], "is a folder")],
    ("replay", "--scheduler"): [
        (["--scheduler", "asha:rf=0.5"], "rf: 0.5 must be > 1"),
        (["--export", "grid.json.gz", "--scheduler", "asha:rf=1"], "rf: 1.0 must be > 1"),
        (["--scheduler", "asha:grace=0"], "grace: 0 must be >= 1"),
        (["--scheduler", "asha:grace=180"], "must be less than the budget's 180 iterations"),
        (["--scheduler", "asha:grace=" + "9" * 400], "must be less than the budget's 180"),
        (["--scheduler", "x:noise=-1"], "noise: -1.0 must be >= 0"),
        (["--scheduler", "x:window=0"], "window: 0 must be >= 1"),
        (["--scheduler", "x:score=median"], "is not one of last, mean, best"),
        (["--scheduler", "x:rung=2"], "rung: 2 must be 0 or 1"),
        (["--scheduler", "x:rf=fast"], "rf='fast' is not float"),
        (["--scheduler", "x:graze=1"], "unknown key 'graze'"),
        (["--scheduler", ""], "give 'today', 'spec'")],
    ("replay", "--searcher"): [
        (["--searcher", "structured:fraction=-1"], "fraction: -1.0 must be in (0, 1]"),
        (["--searcher", "structured:fraction=2"], "fraction: 2.0 must be in (0, 1]"),
        (["--searcher", "structured:max_pairs=-3"], "max_pairs: -3 must be >= 1"),
        (["--searcher", "structured:stop=-1"], "stop: -1.0 must be > 0"),
        (["--searcher", "random:fraction=0"], "fraction: 0.0 must be in (0, 1]"),
        (["--export", "grid.json.gz", "--searcher", "structured:stop=nan"], "stop: nan"),
        (["--searcher", "structured:max_pairs=2,fraction=0.5"], "not both"),
        (["--searcher", "grid:max_pairs=2"], "give grid, structured or random"),
        (["--searcher", ""], "give grid, structured or random")],
    ("replay", "--orders"): [(["--orders", "0"], "is not an integer >= 1"),
                             (["--orders", "many"], "is not an integer >= 1")],
    ("replay", "--concurrency"): [(["--concurrency", "0"], "comma-separated integers >= 1"),
                                  (["--concurrency", "1,,4"], "comma-separated integers >= 1"),
                                  (["--concurrency", ""], "comma-separated integers >= 1")],
    ("replay", "--seed"): [(["--seed", "x"], SEED_RANGE), (["--seed", "-1"], SEED_RANGE)],
    ("demo", None): [(["--bogus"], "unrecognized arguments")],
    ("demo", "--out"): [(["--out", ""], "empty"), (["--out", GARBAGE], "is a file")],
    ("demo", "--inception-weights"): [(["--inception-weights", "missing.pth"], "missing.pth"),
                                      (["--inception-weights", GARBAGE], "garbage")],
    ("ls", None): [(["--bogus"], "unrecognized arguments")],
    ("ls", "--storage"): [(["--storage", ""], "empty value"),
                          (["--storage", GARBAGE], "is a file")],
    ("ls", "--json"): [(["--json=1"], "ignored explicit argument")],
    ("best", None): [(["--bogus"], "unrecognized arguments")],
    ("best", "sweep"): [(["nowhere"], "no sweep there")],
    ("best", "--storage"): [(["nowhere", "--storage", "missing-storage"], "missing-storage")],
    ("best", "--json"): [(["--json=1"], "ignored explicit argument")],
    (None, None): [(["launch-all"], "invalid choice"), ([], "required: command")],  # no command
}

# Cases a positional argument replaces: the base's value of it is left out.
POSITIONAL_BASE = {("fid", "dir_a"): 2, ("fid", "dir_b"): 2, ("import", "format"): 4,
                   ("import", "g"): 4, ("import", "d"): 4, ("split", "folder"): 3,
                   ("sample", "checkpoint"): 1, ("launch", "spec"): 2, ("resume", "sweep"): 1,
                   ("status", "sweep"): 1, ("report", "sweep"): 1, ("replay", "sweep"): 1,
                   ("best", "sweep"): 1,
                   **{(c, "--storage"): 1 for c in ("resume", "status", "report", "replay",
                                                     "best")}}


def parser_options() -> set[tuple[str, str | None]]:
    """Every (subcommand, option) the parser has (a positional by its name), and each
    subcommand itself (None)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = set()
    for name, p in sub.choices.items():
        out.add((name, None))
        for a in p._actions:
            if not isinstance(a, argparse._HelpAction):
                out.add((name, a.option_strings[0] if a.option_strings else a.dest))
    return out


def test_every_subcommand_and_option_has_a_row():
    have = parser_options()
    missing = sorted(have - set(ROWS), key=str)
    assert not missing, f"no contract row for these (command, option): {missing}"
    stale = sorted(set(ROWS) - have - {(None, None)}, key=str)
    assert not stale, f"rows for options the CLI no longer has: {stale}"


def cases():
    for (command, option), rows in ROWS.items():
        for args, says in rows:
            yield pytest.param(command, option, args, says,
                               id=f"{command} {option or ''} {' '.join(args)}".strip())


@pytest.fixture(scope="module")
def world(tmp_path_factory, sources, faces, weights) -> dict[str, str]:
    """The files the rows name, outside the working directory each case runs in."""
    from tests.conftest import SHARED
    from tests.helpers import write_spec
    from tests.test_results import recorded_sweep

    root = tmp_path_factory.mktemp("contract")
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"garbage: no checkpoint, no YAML mapping, no recording")
    broken = root / "broken"
    (broken / "gansweep").mkdir(parents=True)
    (broken / "gansweep" / "trials.json").write_text("{")
    spec = write_spec(root / "spec.yaml", sources["dcgan"], faces, weights)
    twice = root / "twice.yaml"
    twice.write_text(spec.read_text() + "name: again\n")
    return {"src": str(sources["dcgan"]), "data": str(faces),
            "spec": str(spec), "broken": str(broken), "twice": str(twice),
            "sweep": str(recorded_sweep(root / "sweeps")), "garbage": str(garbage),
            "rosi": str(SHARED / "reference" / "stylegan2-rosinality-train-ckpt.pt"),
            "rec": str(RECORDING), "root": str(root), "weights": str(weights)}


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def named(line: str, option: str | None, args: list[str]) -> bool:
    """Whether the line names the option: as typed (``--batch-size``), or as the field it
    sets (``batch_size``); a positional, or a file whose content is wrong, by its path."""
    if option is None:
        return True
    bare = option.lstrip("-")
    paths = [a for a in args if not a.startswith("-") and (not option.startswith("-")
                                                           or "garbage" in a)]
    return any(form in line for form in (option, bare, bare.replace("-", "_"), *paths))


@pytest.mark.parametrize("command, option, args, says", list(cases()))
def test_a_bad_value_is_one_line_and_exit_2_and_writes_nothing(world, tmp_path, monkeypatch,
                                                              command, option, args, says):
    import ray

    from gansweep.core import train

    def refuse(*a, **k):
        raise AssertionError("the command got as far as training or starting Ray")
    monkeypatch.setattr(train, "train", refuse)
    monkeypatch.setattr(ray, "init", refuse)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("GANSWEEP_CACHE", str(cwd / "cache"))
    monkeypatch.delenv("GANSWEEP_STORAGE", raising=False)
    monkeypatch.setenv("GANSWEEP_INCEPTION_WEIGHTS", world["weights"])
    base = BASE.get(command, [])[POSITIONAL_BASE.get((command, option), 0):]
    argv = [command] if command else []
    argv += [a.format(**world) for a in (*base, *args)]
    watched = [Path(world[k]) for k in ("root", "data")] + [Path(world["src"]).parent]
    before = [tree(w) for w in watched]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    assert code == 2, (argv, code, out.getvalue()[-500:], err.getvalue()[-1000:])
    assert len(lines) == 1, (argv, err.getvalue())
    prefix = f"gansweep {command}: error: " if command else "gansweep: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert named(lines[0], option, argv) and says in lines[0], (option, says, lines[0])
    assert not list(cwd.iterdir()), f"{argv} wrote {sorted(map(str, cwd.rglob('*')))}"
    assert [tree(w) for w in watched] == before, f"{argv} wrote in the fixtures' folders"
