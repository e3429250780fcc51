"""The CLI as a user runs it: results as one JSON line, bad inputs as one clear line."""
import json

import pytest

from tests.helpers import assert_one_clear_line, cli


def test_partitions_lists_21():
    out = cli("partitions", "--units", "5", "--net", "G")
    assert out.returncode == 0
    lines = [line for line in out.stdout.splitlines() if line.startswith("G(")]
    assert len(lines) == 21
    assert "G(1,2,2)\tfinetune finetune adafm adafm freeze" in out.stdout


def test_transfer_prints_json(sources, faces, tmp_path):
    out = cli("transfer", "--source", sources["dcgan"], "--data", faces, "--d", "D(1,2,2)",
                   "--g", "G(1,2,2)", "--iters", "2", "--batch-size", "8", "--metrics", "none",
                   "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["iterations"] == 2 and result["label"] == "D(1,2,2)G(1,2,2)"
    assert result["trainable_g"] > 0 and result["images_per_s"] > 0


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
