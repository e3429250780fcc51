"""benchmarks/bench_gpu.py keeps running: its smoke mode on the CPU, from a source checkout
that was never installed, on a machine without Ray, plotly or tqdm (a GPU machine may have
only torch, torchvision, numpy, scipy and pytorch-fid), says "pending a GPU" for every
figure and invents none."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSENT = ("ray", "plotly", "tqdm")

# The editable install's finder removed: only the checkout's folders are importable.
RUN_FROM_CHECKOUT = (
    "import runpy, sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path\n"
    "                    if 'editable' not in getattr(f, '__module__', '')]\n"
    "sys.argv = ['bench_gpu', *sys.argv[1:]]\n"
    "runpy.run_module('benchmarks.bench_gpu', run_name='__main__')\n")


def test_the_smoke_run_needs_no_ray_and_invents_no_gpu_figure(tmp_path, weights):
    absent = tmp_path / "absent"
    for name in ABSENT:  # each import of these fails, in the command and its processes
        (absent / name).mkdir(parents=True)
        (absent / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    out = tmp_path / "table.json"
    env = {**os.environ, "PYTHONPATH": str(absent), "CUDA_VISIBLE_DEVICES": "",
           "GANSWEEP_INCEPTION_WEIGHTS": weights}
    run = subprocess.run([sys.executable, "-c", RUN_FROM_CHECKOUT, "--smoke", "--device", "cpu",
                          "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    table = json.loads(out.read_text())
    assert table["smoke"] and table["device"] == "cpu"
    rows = {r["what"]: r for r in table["rows"]}
    for r in rows.values():
        assert r["value"] is None and r["note"] == "pending a GPU", r
    # Every part ran (its CPU figure is kept beside the pending one), the CUDA tests aside.
    assert rows.pop("the CUDA-only tests")["cpu_smoke"] is None
    assert all(r["cpu_smoke"] is not None and r["cpu_smoke"] > 0 for r in rows.values()), rows
    names = " ".join(rows)
    for part in ("dcgan 32 px", "stylegan2 32 px", "gansweep / plain", "2 process(es)",
                 "whole transfer trial", "FID features, float32", "FID features, tf32",
                 "FID features, bf16"):
        assert part in names, part
    assert "pending a GPU" in run.stdout and "| what | measured | note |" in run.stdout
