"""``gansweep demo``: the whole job on a fresh machine with no data of the user's."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from gansweep.core.checkpoint import snapshot
from gansweep.core.config import TrainConfig
from gansweep.core.models import ArchConfig
from gansweep.core.synthetic import make_domain
from gansweep.core.train import train


def run_demo(out: Path, inception_weights: str | None = None) -> Path:
    """Make a source and a target domain, pretrain a tiny source GAN, and run the demo sweep
    (ASHA, local Ray) in ``out``; returns the sweep directory."""
    from gansweep.results.report import write_results
    from gansweep.sweep.runner import launch
    from gansweep.sweep.spec import load_spec, shipped_dir
    from gansweep.sweep.state import status_text

    t0 = time.time()
    out = out.resolve()
    data = out / "data"
    if not (data / "faces").is_dir():
        print(f"[demo] making synthetic domains in {data}: 600 'blobs' (source), "
              f"64 'faces' (target)", flush=True)
        make_domain(data / "blobs", "blobs", 600, 32, seed=0)
        make_domain(data / "faces", "faces", 64, 32, seed=1)
    source = out / "source.pt"
    if not source.is_file():
        print("[demo] pretraining a tiny DCGAN-WGAN source on 'blobs' (400 iterations)",
              flush=True)
        cfg = TrainConfig(data=str(data / "blobs"), out=str(out / "source_run"),
                          arch=ArchConfig("dcgan", 32, 16, 32, "batch"), loss="wgan", lr=2e-4,
                          batch_size=32, iters=400, metrics=[], label="pretrain")
        snapshot(train(cfg), source)
    spec_path = out / "demo.yaml"
    # A copy beside the data it names: its relative paths are relative to its folder.
    shutil.copy(shipped_dir() / "demo.yaml", spec_path)
    if inception_weights:
        with open(spec_path, "a") as f:
            f.write(f"inception_weights: {Path(inception_weights).resolve()}\n")
    spec = load_spec(spec_path)
    storage = out / "sweeps"
    n = 1
    while (storage / spec.name).exists():
        n += 1
        spec.name = spec.raw["name"] = f"demo-{n}"
    confirm = "" if spec.confirm is None else \
        f", then confirming the best on seeds {list(spec.confirm.seeds)}"
    print(f"[demo] launching {len(spec.trials())} trials with ASHA on a local Ray{confirm}",
          flush=True)
    sweep_dir = launch(spec, str(storage))
    print(f"\n[demo] done in {time.time() - t0:.0f} s. Results: {sweep_dir}")
    print(status_text(sweep_dir))
    print(f"[demo] report (open in a browser): {write_results(sweep_dir)}")
    return sweep_dir
