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
