"""Which EMA generator to evaluate (the ranking issue's pilot): settings of the emoji study
trained once each, while several EMA generators (stylegan2-ada's ema_kimg with different
ramp-ups) and G itself are evaluated on the same noise every ``eval_every`` iterations.

Reports, per evaluated generator: how much FID moves between consecutive evaluations of
one run (the jitter a rung decision sees), the final FID, and Spearman's rho between FID
at early iterations and the final FID over the settings.

    python -m benchmarks.bench_ema [--source checkpoints/noto32_w16.pt] [--settings 8]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

from benchmarks._common import EMOJI, ROOT, WEIGHTS, machine
from gansweep.core.ema import EMA
from gansweep.core.evaluate import FID_SEED, generate
from gansweep.core.features import FeatureStats, get_extractor
from gansweep.core.metrics import fid
from gansweep.core.train import setup, train_step
from gansweep.core.trial import transfer_config

SETTINGS = [("baseline", "fine-tune"), ("baseline", "scratch"), ("baseline", "freeze"),
            ("baseline", "scale-shift"), ("baseline", "freeze-d"),
            ("pair", "D(1,0,4)G(1,2,2)"), ("pair", "D(2,0,3)G(0,4,1)"),
            ("pair", "D(0,0,5)G(3,0,2)"), ("pair", "D(1,2,2)G(1,2,2)"),
            ("pair", "D(3,0,2)G(1,0,4)")]


def run(source: str, kind: str, setting: str, rampups: list[float], cache: str,
        iters: int, every: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        how = {"baseline": setting} if kind == "baseline" else \
            {"d": setting[: setting.index("G")], "g": setting[setting.index("G"):]}
        cfg = transfer_config(source, str(EMOJI / "twemoji-faces"), out, lr=2e-4, iters=iters,
                              batch_size=32, fid_samples=64, metrics=["fid"],
                              inception_weights=WEIGHTS, cache_dir=cache, **how)
        s = setup(cfg)
        emas = {f"ema rampup {r}": EMA(s.G, 10.0, r, cfg.batch_size) for r in rampups}
        extractor = get_extractor(WEIGHTS, s.device)
        rows = []
        while s.iteration < iters:
            train_step(s)
            for e in emas.values():
                e.update(s.iteration * cfg.batch_size)
            if s.iteration % every:
                continue
            for name, e in {"G itself": None, **emas}.items():
                s.ema = e
                fake = FeatureStats(extractor(generate(s, 64, cfg.seed + FID_SEED)))
                rows.append({"setting": setting, "generator": name, "iteration": s.iteration,
                             "fid": fid(s.real, fake)})
            s.ema = None
        return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=str(ROOT / "checkpoints" / "noto32_w16.pt"))
    ap.add_argument("--settings", type=int, default=len(SETTINGS))
    ap.add_argument("--rampups", default="0.05,0.1,0.2,0.4")
    ap.add_argument("--iters", type=int, default=180)
    ap.add_argument("--every", type=int, default=20)
    a = ap.parse_args()
    rampups = [float(r) for r in a.rampups.split(",")]
    print(machine(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for kind, setting in SETTINGS[: a.settings]:
            rows += run(a.source, kind, setting, rampups, cache, a.iters, a.every)
            print(f"done {setting}", flush=True)
    frame = pd.DataFrame(rows)
    final = frame[frame["iteration"] == a.iters].set_index(["generator", "setting"])["fid"]
    print(f"{'generator':<18} {'jitter':>7} {'final':>7}  rho(FID_t, final) at t = "
          + " ".join(f"{t:>5}" for t in range(a.every, a.iters, a.every)))
    for name, part in frame.groupby("generator", sort=False):
        curves = part.pivot(index="setting", columns="iteration", values="fid")
        jitter = np.abs(np.diff(curves.to_numpy(), axis=1)).mean()
        rhos = [curves[t].rank().corr(final[name].reindex(curves.index).rank())
                for t in range(a.every, a.iters, a.every)]
        print(f"{name:<18} {jitter:7.2f} {final[name].mean():7.2f}  "
              + " ".join(f"{r:5.2f}" for r in rhos))
    print("FIGURE ema: jitter = mean |FID_t - FID_(t-every)| within a run; final = mean final "
          f"FID over {frame['setting'].nunique()} settings")


if __name__ == "__main__":
    main()
