"""What ``gansweep ls``, ``best`` and ``status`` read off a storage and a sweep, without Ray:
the sweeps of a storage with their state, a sweep's status lines, and the winner of one,
handed over as a spec fragment, a checkpoint and a command that samples from it (as Ray Tune's
``get_best_result`` and Optuna's ``best_trial`` hand over theirs)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS
from gansweep.core.trial import Trial
from gansweep.sweep.record.layout import newest_checkpoint
from gansweep.sweep.record.state import (
    DONE,
    EVENTS_FILE,
    RESULTS_FILE,
    TRIALS_FILE,
    SweepState,
    check_storage,
    default_storage,
    interrupted,
    sweep_dir_of,
    where,
)
from gansweep.sweep.record.storage import is_uri
from gansweep.sweep.record.verdict import Verdict, verdict
from gansweep.sweep.spec.files import load_sweep_spec
from gansweep.sweep.spec.grid import AXES

# A sweep's state in ``ls``: what it needs next.
STATES = {"finished": "every trial of every phase has ended",
          "interrupted": "stopped by Ctrl-C or SIGTERM; 'gansweep resume' continues it",
          "not started": "no trial has started yet; 'gansweep resume' starts it",
          "incomplete": "running now, or its driver died; 'gansweep resume' continues it",
          "unreadable": "its records cannot be read (the reason follows the table)"}


def sweep_names(storage: str | None) -> list[str]:
    """The names of the sweeps in a storage (its folders that hold a sweep's records)."""
    storage = storage or default_storage()
    if is_uri(storage):
        from pyarrow import fs

        from gansweep.sweep.record.storage import _fs

        filesystem, root = _fs(storage)
        infos = filesystem.get_file_info(fs.FileSelector(root.rstrip("/"),
                                                         allow_not_found=True))
        folders = [i.base_name for i in infos if i.type == fs.FileType.Directory]
        return sorted(n for n in folders if filesystem.get_file_info(
            f"{root.rstrip('/')}/{n}/{TRIALS_FILE}").type == fs.FileType.File)
    check_storage(storage)
    return sorted(p.parent.parent.name
                  for p in Path(storage).expanduser().glob(f"*/{TRIALS_FILE}"))


def _winner(found: Verdict | None) -> str:
    return "-" if found is None else \
        f"{found.winner} {found.ranking[0][1]}" + ("" if found.confirmed else " (search)")


def summary(sweep_dir: Path) -> dict[str, Any]:
    """One row of ``ls``: name, state, trials done / expected, the winner so far and when
    the sweep last changed."""
    state = SweepState.load(sweep_dir)
    spec = load_sweep_spec(sweep_dir)
    counts = state.counts()
    done = sum(counts[s] for s in DONE)
    found = verdict(spec, list(state.trials.values()), len(state.confirm_trials))
    if interrupted(sweep_dir) is not None:
        which = "interrupted"
    elif not state.trials:
        which = "not started"
    elif counts["pending"] == counts["running"] == 0 and (
            not spec.confirms or state.confirm_trials):
        which = "finished"
    else:
        which = "incomplete"
    changed = max(p.stat().st_mtime for p in (sweep_dir / f for f in (
        TRIALS_FILE, EVENTS_FILE, RESULTS_FILE)) if p.is_file())
    return {"name": state.data["name"], "state": which, "done": done,
            "expected": state.expected, "errored": counts["errored"],
            "winner": None if found is None else found.winner,
            "winner_score": None if found is None else _interval(found)[1],
            "confirmed": None if found is None else found.confirmed,
            "changed": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(changed)),
            "path": str(sweep_dir), "_winner": _winner(found)}


def ls_rows(storage: str | None) -> list[dict[str, Any]]:
    """Every sweep of the storage, in name order; one whose records cannot be read is
    listed as ``unreadable`` with the reason (``error``), the others as usual."""
    rows = []
    for name in sweep_names(storage):
        try:
            rows.append(summary(sweep_dir_of(name, storage)))
        except (GansweepError, OSError, KeyError) as e:
            rows.append({"name": name, "state": "unreadable", "done": None, "expected": None,
                         "errored": 0, "winner": None, "error": str(e), "changed": "-",
                         "_winner": "-"})
    return rows


def ls_text(rows: list[dict[str, Any]], storage: str | None) -> str:
    """``ls``'s table: one line per sweep."""
    where = storage or default_storage()
    if not rows:
        return f"no sweeps in {where} ('gansweep launch SPEC --storage {where}' starts one)"
    table = [("NAME", "STATE", "TRIALS", "WINNER SO FAR", "LAST CHANGE")] + [
        (r["name"], r["state"], "-" if r["done"] is None else f"{r['done']}/{r['expected']}"
         + (f" ({r['errored']} errored)" if r["errored"] else ""), r["_winner"], r["changed"])
        for r in rows]
    unreadable = [f"# {r['name']}: {r['error']}" for r in rows if "error" in r]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return "\n".join(["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                      for row in table] + unreadable)


def _number(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN: one seed gives no interval


def _interval(found: Verdict) -> tuple[str, dict[str, Any]]:
    name, ci = found.ranking[0]
    return name, {"mean": _number(ci.mean), "low": _number(ci.low), "high": _number(ci.high),
                  "seeds": ci.n, "text": str(ci)}


def spec_fragment(t: Trial) -> dict[str, Any]:
    """The spec that runs this setting alone (add seeds, a budget and a name): its
    partition, baseline or plan, its source and target, and every axis not at its
    default."""
    out: dict[str, Any] = {"source": t.source, "target": t.target}
    if t.d is not None:
        out.update(partitions=[[t.d, t.g]], baselines=[])
    elif t.baseline is not None:
        out.update(partitions=[], baselines=[t.baseline])
    else:
        out.update(partitions=[], baselines=[],
                   plans=[{"label": t.label, "g": t.g_plan, "d": t.d_plan}])
    if t.modulation != Trial.modulation:
        out["modulation"] = t.modulation
    if t.freeze_d_depth is not None:
        out["freeze_d_depth"] = t.freeze_d_depth
    for axis, default in AXES.items():
        if axis != "seed" and getattr(t, axis) != default[0]:
            out[axis] = [getattr(t, axis)]
    return out


def best(sweep_dir: Path) -> dict[str, Any]:
    """The winner (``sweep.record.verdict``): its setting, its interval, its spec fragment, the
    checkpoint of its best seed (and of every seed) and a command that samples from it."""
    state = SweepState.load(sweep_dir)
    spec = load_sweep_spec(sweep_dir)
    found = verdict(spec, list(state.trials.values()), len(state.confirm_trials))
    if found is None:
        raise GansweepError(f"sweep {state.data['name']!r}: no trial has a final score yet; "
                            f"'gansweep status {sweep_dir}' shows how far it is")
    name, score = _interval(found)
    records = list(state.trials.values())
    trials = [Trial.from_dict(r["config"]) for r in records]
    phase = "confirm" if found.confirmed else "search"
    runs = [(t, r) for t, r in zip(trials, records) if t.setting_key in found.settings[name]
            and t.phase == phase and r["status"] == "finished"
            and (r.get("last") or {}).get("score") is not None]
    loss = METRICS.get(spec.metric).loss
    runs.sort(key=lambda tr: loss(tr[1]["last"]["score"]))
    seeds = []
    for t, r in runs:
        checkpoint = newest_checkpoint(sweep_dir / r["path"]) if r.get("path") else None
        seeds.append({"seed": t.seed, "trial_id": r["trial_id"], "score": r["last"]["score"],
                      "checkpoint": None if checkpoint is None else str(checkpoint)})
    top = next((s for s in seeds if s["checkpoint"]), None)
    checkpoint = None if top is None else top["checkpoint"]
    return {"sweep": state.data["name"], "path": str(sweep_dir), "setting": name,
            "confirmed": found.confirmed, "how": found.how, "metric": spec.metric,
            "score": found.what,
            "interval": score, "spec": spec_fragment(runs[0][0]) if runs else None,
            "checkpoint": checkpoint, "seeds": seeds,
            "sample": None if checkpoint is None else
            f"gansweep sample {checkpoint} --out {state.data['name']}-best.png"}


def best_text(b: dict[str, Any]) -> str:
    """``best``'s lines for a reader."""
    import yaml

    ci = b["interval"]
    lines = [f"winner of {b['sweep']}: {b['setting']} ({b['how']})",
             f"{b['score']}: {ci['text']} (mean [95% interval] over {ci['seeds']} seeds)",
             f"checkpoint (seed {b['seeds'][0]['seed']}): {b['checkpoint']}" if b["checkpoint"]
             else "checkpoint: none on this machine (its trial folder has none)"]
    if b["sample"]:
        lines.append(f"sample from it: {b['sample']}")
    if b["spec"] is not None:
        lines.append("spec fragment (this setting alone):")
        lines += ["  " + line for line in yaml.safe_dump(b["spec"], sort_keys=False)
                  .rstrip().splitlines()]
    return "\n".join(lines)


def status_text(sweep_dir: Path) -> str:
    """What ``gansweep status`` prints: trials by state, the verdict's winner (the sweep's
    one "best"), each metric's lowest (or highest) single evaluation labelled as such, and
    the compute spent."""
    state = SweepState.load(sweep_dir)
    counts, expected = state.counts(), state.expected
    lines = [f"sweep {state.data['name']} at {sweep_dir}", f"trials: {expected} expected; " +
             ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    found = verdict(load_sweep_spec(sweep_dir), list(state.trials.values()),
                    len(state.confirm_trials))
    lines.append(f"winner: {found.headline()}" if found is not None else
                 "winner: none yet (no trial has run to the end)")
    if not state.trials:
        lines.append(f"no trial has started yet (the launch stopped before the first one); "
                     f"'gansweep resume {where(sweep_dir)}' starts it")
    stopped = interrupted(sweep_dir)
    if stopped is not None:
        lines.append(f"interrupted ({stopped['signal']}) during the {stopped['phase']} at "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stopped['time']))}; "
                     f"continue it with 'gansweep resume {where(sweep_dir)}'")
    for name, m in METRICS.items():
        scored = [(t["best"][name], t) for t in state.trials.values()
                  if t["best"].get(name) is not None]
        if scored:
            value, t = min(scored, key=lambda x: m.loss(x[0]))
            which = "highest" if m.mode == "max" else "lowest"
            lines.append(f"{which} single evaluation: {name} {value:.4g}  {t['label']}  "
                         f"(trial {t['trial_id']}, seed {t['config']['seed']})")
    seconds = sum(t["time_total_s"] for t in state.trials.values())
    iters = sum(t["iteration"] for t in state.trials.values())
    full = expected * state.data["max_iters"]
    lines.append(f"compute: {seconds / 3600:.3f} trial-hours, {iters} of {full} iterations "
                 f"({100 * iters / full if full else 0:.1f}% of running every trial to the end)")
    errored = [t for t in state.trials.values() if t["status"] == "errored"]
    for t in errored[:5]:
        last = (t["error"] or "").strip().splitlines()[-1:] or ["?"]
        lines.append(f"errored: {t['label']} (trial {t['trial_id']}): {last[0][:160]}")
    return "\n".join(lines)
