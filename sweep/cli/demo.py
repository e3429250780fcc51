"""``gansweep demo``: the whole job on a fresh machine with no data of the user's.

It draws two related domains (``core.synthetic``): 1,000 smiley faces as the source and 48
cat faces as the target (the same kind of object in other colours and shapes, few images),
pretrains a small DCGAN on the faces, and runs the shipped ``demo`` spec on the cats with a
local Ray: a 2 x 2 grid of D x G partitions and the fine-tune and scratch baselines under
ASHA, then the search's best setting and the baselines rerun on fresh seeds, from which the
verdict says whether transfer beat training from scratch, and by how much.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from gansweep.core.checkpoint import snapshot
from gansweep.core.features import check_weights
from gansweep.core.models import ArchConfig
from gansweep.core.progress import Progress
from gansweep.core.synthetic import make_domain
from gansweep.core.train import train
from gansweep.core.trial import Trial, TrialTemplate, trial_config
from gansweep.sweep.run.driver import launch
from gansweep.sweep.spec.files import load_spec, shipped_dir

SOURCE_IMAGES, TARGET_IMAGES = 1000, 48
# The source GAN: a DCGAN with the hinge loss, one critic step per generator step and many
# small batches (measured: FID 188 to its own data in 46 s on 2 cores, against 337 for the
# same images seen in batches of 64).
SOURCE = TrialTemplate({"batch_size": 16, "iters": 2000, "n_critic": 1, "metrics": []},
                       arch=ArchConfig("dcgan", 32, 16, 32, "batch"))


class _Pretraining(Progress):
    """A bar on a terminal; elsewhere (a log) a line every tenth of the run: the source's
    run evaluates only at its end, the longest wait of the demo on a loaded machine."""

    def update(self, n: int = 1, **values) -> None:
        super().update(n, **values)
        if self.bar is None and self.count % max(1, self.total // 10) == 0 \
                and self.count < self.total:
            self.milestone()


def run_demo(out: Path, inception_weights: str | None = None) -> Path:
    """Make the domains, pretrain the source and run the demo sweep in ``out``; returns the
    sweep directory (the command prints its verdict)."""
    t0 = time.time()
    check_weights(inception_weights)  # a bad file refused now, not after the pretraining
    out = out.resolve()
    data = out / "data"
    if not (data / "cats").is_dir():
        print(f"[demo] drawing {SOURCE_IMAGES} smiley faces (the source domain) and "
              f"{TARGET_IMAGES} cat faces (the target) in {data}", flush=True)
        make_domain(data / "faces", "faces", SOURCE_IMAGES, 32, seed=0)
        make_domain(data / "cats", "cats", TARGET_IMAGES, 32, seed=1)
    source = out / "source.pt"
    if not source.is_file():
        print(f"[demo] pretraining a DCGAN on the faces ({SOURCE.options['iters']} iterations)",
              flush=True)
        trial = Trial(label="pretrain", source=None, target=str(data / "faces"), loss="hinge",
                      lr=4e-4)
        iters = SOURCE.options["iters"]
        with _Pretraining(iters, "it", "[demo] pretrain") as progress:
            snapshot(train(trial_config(SOURCE, trial, str(out / "source_run")),
                           progress=progress), source)
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
    print(f"[demo] transferring to the cats: {len(spec.trials())} trials with ASHA on a local "
          f"Ray, then the best setting and the baselines on seeds {list(spec.confirm.seeds)}",
          flush=True)
    sweep_dir = launch(spec, str(storage))
    print(f"\n[demo] done in {time.time() - t0:.0f} s.")
    return sweep_dir
