"""Figure 4: ASHA vs the full grid on a space the CPU can finish. Runs the study spec with
no early stopping (every trial to the end) and again with ASHA, then reports the compute
spent (trial-seconds), the regret (best final FID found by ASHA vs by the grid) and the
rank correlation of FID at the grace rung with the final FID over the grid.

    python benchmarks/bench_asha.py [--spec search_spaces/emoji_study.yaml]
                                    [--storage runs/sweeps] [--grace 20]

A sweep already complete in the storage is reused; an interrupted one is resumed.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import yaml

from benchmarks._common import ROOT, machine
from gansweep.results.report import write_results
from gansweep.results.tables import load_tables
from gansweep.sweep.runner import launch, resume
from gansweep.sweep.spec import parse_spec
from gansweep.sweep.state import SweepState


def run(spec_path: Path, data: dict, storage: Path) -> Path:
    """Launch the sweep, or resume it if it exists and is unfinished."""
    spec = parse_spec(data, spec_path.parent.resolve(), str(spec_path))
    sweep_dir = storage.resolve() / spec.name
    if (sweep_dir / "gansweep" / "trials.json").is_file():
        counts = SweepState.load(sweep_dir).counts()
        if counts["pending"] or counts["running"] or counts["errored"]:
            resume(sweep_dir)
    else:
        launch(spec, str(storage))
    write_results(sweep_dir)
    return sweep_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "search_spaces" / "emoji_study.yaml"))
    ap.add_argument("--storage", default=str(ROOT / "runs" / "sweeps"))
    ap.add_argument("--grace", type=int, default=20)
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    a = ap.parse_args()
    spec_path, storage = Path(a.spec), Path(a.storage)
    grid_spec = yaml.safe_load(spec_path.read_text())
    if grid_spec.get("scheduler", {}).get("type") != "none":
        raise SystemExit(f"{spec_path}: the grid run needs scheduler: {{type: none}}")
    asha_spec = copy.deepcopy(grid_spec)
    asha_spec["name"] = f"{grid_spec['name']}-asha"
    asha_spec["scheduler"] = {"type": "asha", "grace_period": a.grace,
                              "reduction_factor": a.reduction_factor}

    grid_dir = run(spec_path, grid_spec, storage)
    asha_dir = run(spec_path, asha_spec, storage)

    grid, asha = load_tables(grid_dir), load_tables(asha_dir)
    grid_s, asha_s = grid.trials["wall_s"].sum(), asha.trials["wall_s"].sum()
    grid_it, asha_it = grid.trials["iterations"].sum(), asha.trials["iterations"].sum()
    g, h = grid.grace_and_final(a.grace), asha.grace_and_final(a.grace)
    best_grid = g.loc[g["final"].idxmin()]
    best_asha = h.loc[h["final"].idxmin()]
    # The grid's own number for the setting ASHA picked: selection quality without the
    # run-to-run noise of a second training run.
    picked = g[(g["label"] == best_asha["label"]) & (g["seed"] == best_asha["seed"])]["final"]
    rho = g["grace"].rank().corr(g["final"].rank())
    top = set(g.nsmallest(5, "final")["label"])
    kept = set(h["label"])
    print(machine())
    print(f"space: {spec_path.name}, {len(grid.trials)} trials x {grid.max_iters} iterations; "
          f"ASHA grace {a.grace}, reduction factor {a.reduction_factor}")
    print(f"grid: {grid_s:.0f} trial-seconds, {grid_it} iterations; best final FID "
          f"{best_grid['final']:.2f} ({best_grid['label']})")
    print(f"ASHA: {asha_s:.0f} trial-seconds, {asha_it} iterations, {len(h)} trials to the end; "
          f"best final FID {best_asha['final']:.2f} ({best_asha['label']}; the grid's run of "
          f"it: {picked.iloc[0]:.2f})")
    print(f"grid's top 5 among ASHA's finished trials: {len(top & kept)} of 5")
    regret = (best_asha["final"] - best_grid["final"]) / best_grid["final"]
    regret_sel = (picked.iloc[0] - best_grid["final"]) / best_grid["final"]
    print(f"FIGURE 4: ASHA used {100 * asha_s / grid_s:.1f}% of the grid's trial-seconds "
          f"({100 * asha_it / grid_it:.1f}% of iterations); regret {100 * regret:+.2f}% "
          f"(selection only: {100 * regret_sel:+.2f}%); Spearman rho(FID at grace rung "
          f"{a.grace}, final FID) = {rho:.3f} over {len(g)} grid trials")


if __name__ == "__main__":
    main()
