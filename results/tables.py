"""A sweep directory -> ``trials.parquet`` and ``metrics.parquet``, without Ray.

Reads only gansweep's own files (``gansweep/grid.json``, ``trials.json``, ``results.jsonl``,
and the spec through the same loader as the driver, ``sweep.spec.files.load_sweep_spec``), so it
works on an unfinished sweep, on a copy of one, and while the sweep is still running. Each
trial's row is joined to the grid by its phase and grid index, which its record carries.
The schema is in the README ("Results").
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gansweep.core.fileio import atomic_write
from gansweep.core.metrics import METRICS, Metric
from gansweep.core.treatments import Partition
from gansweep.core.trial import Trial, setting_key
from gansweep.sweep.record.state import DONE, GRID_FILE, REFERENCES_FILE, SweepState
from gansweep.sweep.record.verdict import identity_names
from gansweep.sweep.spec.files import SPEC_FILE, load_sweep_spec
from gansweep.sweep.spec.schema import SweepSpec

TRIALS_PARQUET = "trials.parquet"
NOT_CHOSEN = "not chosen"  # the status of a trial a structured search did not run
METRICS_PARQUET = "metrics.parquet"

TRIAL_SCHEMA = pa.schema([
    ("trial_id", pa.string()), ("label", pa.string()), ("setting", pa.string()),
    ("index", pa.int64()),
    ("d_partition", pa.string()), ("g_partition", pa.string()),
    ("d_i", pa.int64()), ("d_j", pa.int64()), ("d_k", pa.int64()),
    ("g_i", pa.int64()), ("g_j", pa.int64()), ("g_k", pa.int64()),
    ("baseline", pa.string()), ("modulation", pa.string()),
    ("g_plan", pa.string()), ("d_plan", pa.string()),
    ("family", pa.string()), ("family_mode", pa.string()), ("family_n", pa.int64()),
    ("conditional", pa.string()),
    ("source", pa.string()), ("target", pa.string()), ("target_size", pa.int64()),
    ("source_target_fid", pa.float64()),
    ("augment", pa.string()), ("loss", pa.string()), ("lr", pa.float64()),
    ("lr_mult", pa.string()), ("label_smoothing", pa.float64()), ("label_noise", pa.float64()),
    ("new_units", pa.string()),
    ("g_init", pa.string()), ("d_init", pa.string()), ("seed", pa.int64()),
    ("phase", pa.string()), ("status", pa.string()),
    ("score", pa.float64()), ("score_sd", pa.float64()),
    *[(f"{when}_{m}", pa.float64()) for m in METRICS for when in ("best", "last")],
    ("iterations", pa.int64()), ("max_iters", pa.int64()), ("evaluations", pa.int64()),
    ("wall_s", pa.float64()), ("images_per_s", pa.float64()),
    ("trainable_g", pa.int64()), ("trainable_d", pa.int64()),
    ("fid_threshold", pa.float64()), ("iters_to_threshold", pa.int64()),
    ("starts", pa.int64()), ("failures", pa.int64()), ("error", pa.string()),
    ("node_ip", pa.string()), ("device", pa.string()), ("device_name", pa.string()),
    ("gpu_ids", pa.string()), ("deterministic", pa.bool_()), ("tf32", pa.bool_()),
    ("trial_dir", pa.string()),
])

METRIC_SCHEMA = pa.schema([
    ("trial_id", pa.string()), ("label", pa.string()), ("iteration", pa.int64()),
    *[(m, pa.float64()) for m in METRICS], ("is_sd", pa.float64()),
    ("class_fid", pa.map_(pa.string(), pa.float64())),
    ("fid_sd", pa.float64()), ("fid_rung", pa.float64()), ("fid_rung_sd", pa.float64()),
    ("score", pa.float64()), ("score_sd", pa.float64()),
    ("d_loss", pa.float64()), ("g_loss", pa.float64()),
    ("images_per_s", pa.float64()), ("train_seconds", pa.float64()),
    ("elapsed_s", pa.float64()), ("diverged", pa.bool_()), ("node_id", pa.string()),
])


@dataclass
class SweepTables:
    """A sweep's results as two data frames, plus what the report needs to frame them."""

    name: str
    sweep_dir: Path
    trials: pd.DataFrame
    metrics: pd.DataFrame
    expected: int
    max_iters: int
    units: dict[str, list[str]] | None  # {"G": [...], "D": [...]} in network order
    spec_text: str
    references: dict[str, Any]  # REFERENCES_FILE: classifier accuracy, source-target FIDs
    spec: SweepSpec | None  # the recorded spec, validated (None: a sweep without one)
    records: list[dict[str, Any]]  # the trial records (sweep.record.state), for the verdict
    planned: list[Trial] = field(default_factory=list)  # the grid's and confirmation's trials
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # what sections share

    @property
    def metric(self) -> Metric:
        """What the sweep ranks by."""
        return METRICS.get(self.spec.metric if self.spec is not None else "fid")

    @property
    def missing(self) -> int:
        """Trials of the grid with no result yet (pending or still running)."""
        return int((~self.trials["status"].isin([*DONE, "errored", NOT_CHOSEN])).sum())

    def grace_and_final(self, grace: int) -> pd.DataFrame:
        """Search trials that ran to the end: the score ASHA decided on at their first
        evaluation at or after ``grace`` (its first rung) and their final score, for the
        ASHA trust check. Sweeps recorded before scores existed use FID."""
        done = self.trials[(self.trials["status"] == "finished")
                           & (self.trials["phase"] == "search")]
        column = "score" if self.metrics["score"].notna().any() else "fid"
        later = self.metrics[self.metrics["iteration"] >= grace]
        at_grace = later.groupby("trial_id")[column].first()
        final = self.metrics.groupby("trial_id")[column].last()
        return pd.DataFrame({"label": done["label"].to_numpy(), "seed": done["seed"].to_numpy(),
                             "grace": at_grace.reindex(done["trial_id"]).to_numpy(),
                             "final": final.reindex(done["trial_id"]).to_numpy()})


def _ijk(text: str | None) -> tuple[int | None, int | None, int | None]:
    if text is None:
        return None, None, None
    p = Partition.parse(text)
    return p.i, p.j, p.k


def _joined(plan: list[str] | None) -> str | None:
    return None if plan is None else ",".join(plan)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _threshold_iter(history: pd.DataFrame, threshold: float | None) -> int | None:
    if threshold is None or history.empty:
        return None
    hit = history[history["fid"] <= threshold]
    return None if hit.empty else int(hit["iteration"].min())


def _metrics_frame(state: SweepState, labels: dict[str, str]) -> pd.DataFrame:
    rows = [{"trial_id": r["trial_id"], "label": labels.get(r["trial_id"]),
             "iteration": r["iteration"],
             "class_fid": list(r["class_fid"].items()) if r.get("class_fid") else None,
             **{k: _float(r.get(k)) for k in (*METRICS, "is_sd", "fid_sd", "fid_rung",
                                              "fid_rung_sd", "score", "score_sd")},
             "d_loss": r.get("d_loss"),
             "g_loss": r.get("g_loss"), "images_per_s": r.get("images_per_s"),
             "train_seconds": r.get("train_seconds"), "elapsed_s": r.get("time_total_s"),
             "diverged": bool(r.get("diverged")), "node_id": r.get("node_id")}
            for r in state.results() if r.get("iteration") is not None]
    frame = pd.DataFrame(rows, columns=METRIC_SCHEMA.names)
    # A trial restarted from a checkpoint repeats the evaluations after it; keep the newest.
    frame = frame.drop_duplicates(["trial_id", "iteration"], keep="last")
    return frame.sort_values(["trial_id", "iteration"], kind="stable").reset_index(drop=True)


def _join(planned: list[Trial], records: list[dict[str, Any]]
          ) -> list[tuple[Trial, dict[str, Any] | None]]:
    """Each planned trial with its record (None: Tune never created it), by phase and grid
    index; then records no plan holds. A sweep recorded before trials carried their index
    is joined once by settings and seed."""
    by_place = {(r["config"]["phase"], r["config"]["index"]): r for r in records
                if "index" in r["config"]}
    legacy = [r for r in records if "index" not in r["config"]]
    rows, joined = [], set()
    for t in planned:
        rec = by_place.get((t.phase, t.index))
        if rec is None and legacy:
            rec = next((r for r in legacy if r["trial_id"] not in joined and
                        setting_key(r["config"]) == t.setting_key and
                        r["config"]["seed"] == t.seed and
                        r["config"].get("phase", "search") == t.phase), None)
        if rec is not None:
            joined.add(rec["trial_id"])
        rows.append((t, rec))
    return rows + [(Trial.from_dict(r["config"]), r) for r in records
                   if r["trial_id"] not in joined]


def load_tables(sweep_dir: str | Path, fid_threshold: float | None = None) -> SweepTables:
    """Read a sweep directory into tables. ``fid_threshold`` defaults to the best FID of
    the scratch baseline (Denton et al.'s criterion: how soon a transfer gets there)."""
    sweep_dir = Path(sweep_dir)
    state = SweepState.load(sweep_dir)
    grid_path = sweep_dir / GRID_FILE
    grid = json.loads(grid_path.read_text()) if grid_path.is_file() else None
    records = list(state.trials.values())
    labels = {r["trial_id"]: r["label"] for r in records}
    metrics = _metrics_frame(state, labels)
    # A grid recorded before trials carried their index: its order is the index.
    planned = [Trial.from_dict({"index": i, **c}) for part in
               (grid["trials"] if grid else [], state.confirm_trials) for i, c in enumerate(part)]
    rows = _join(planned, records)
    names, _ = identity_names([t for t, _ in rows])

    if fid_threshold is None:
        scratch = [r["best"].get("fid") for r in records
                   if r["config"]["baseline"] == "scratch" and r["best"].get("fid") is not None]
        finite = [f for f in scratch if math.isfinite(f)]
        fid_threshold = min(finite) if finite else None

    histories = dict(tuple(metrics.groupby("trial_id")))
    ref_path = sweep_dir / REFERENCES_FILE
    references = json.loads(ref_path.read_text()) if ref_path.is_file() else {}
    gaps = {(g["source"], g["target"]): g["source_target_fid"]
            for g in references.get("sources", [])}
    table = [{**_trial_row(t.to_dict(), rec, state.data["max_iters"], sweep_dir,
                           histories.get(rec["trial_id"] if rec else None, metrics.iloc[:0]),
                           fid_threshold),
              "setting": names[t.setting_key],
              # scratch records a source only for its architecture: no transfer from it
              "source_target_fid": None if t.baseline == "scratch" else
              gaps.get((t.source, t.target))}
             for t, rec in rows]
    trials = pd.DataFrame(table, columns=TRIAL_SCHEMA.names)
    search = state.search_state
    if search is not None and search["finished"]:  # what the structured search left out
        trials.loc[(trials["phase"] == "search") & (trials["status"] == "pending"),
                   "status"] = NOT_CHOSEN
    spec_path = sweep_dir / SPEC_FILE
    spec = load_sweep_spec(sweep_dir) if spec_path.is_file() else None
    return SweepTables(state.data["name"], sweep_dir, trials, metrics,
                       max(state.expected, int((trials["status"] != NOT_CHOSEN).sum())),
                       state.data["max_iters"],
                       grid["units"] if grid else None,
                       spec_path.read_text() if spec_path.is_file() else "", references,
                       spec, records, planned)


def _trial_row(config: dict[str, Any], rec: dict[str, Any] | None, max_iters: int,
               sweep_dir: Path, history: pd.DataFrame, threshold: float | None) -> dict:
    d_ijk, g_ijk = _ijk(config["d"]), _ijk(config["g"])
    rec = rec or {}
    last, best = rec.get("last", {}), rec.get("best", {})
    path = rec.get("path")
    return {
        "trial_id": rec.get("trial_id"), "label": config["label"], "index": config["index"],
        "d_partition": config["d"], "g_partition": config["g"],
        "d_i": d_ijk[0], "d_j": d_ijk[1], "d_k": d_ijk[2],
        "g_i": g_ijk[0], "g_j": g_ijk[1], "g_k": g_ijk[2],
        "baseline": config["baseline"], "modulation": config["modulation"],
        "g_plan": _joined(config["g_plan"]), "d_plan": _joined(config["d_plan"]),
        "family": config["family"], "family_mode": config["family_mode"],
        "family_n": config["family_n"], "conditional": config["conditional"],
        "source": config["source"], "target": config["target"],
        "target_size": config["target_size"], "augment": config["augment"],
        "loss": last.get("loss") or config["loss"],
        "lr": last.get("lr") or config["lr"],
        "lr_mult": last.get("lr_mult"), "label_smoothing": last.get("label_smoothing"),
        "label_noise": last.get("label_noise"), "new_units": last.get("new_units"),
        "g_init": config["g_init"], "d_init": config["d_init"], "seed": config["seed"],
        "phase": config["phase"], "status": rec.get("status", "pending"),
        "score": _float(last.get("score")), "score_sd": _float(last.get("score_sd")),
        **{f"best_{m}": _float(best.get(m)) for m in METRICS},
        **{f"last_{m}": _float(last.get(m)) for m in METRICS},
        "iterations": rec.get("iteration", 0), "max_iters": max_iters,
        "evaluations": len(history),
        "wall_s": rec.get("time_total_s", 0.0), "images_per_s": last.get("images_per_s"),
        "trainable_g": last.get("trainable_g"), "trainable_d": last.get("trainable_d"),
        "fid_threshold": threshold, "iters_to_threshold": _threshold_iter(history, threshold),
        "starts": len(rec.get("starts", [])), "failures": rec.get("failures", 0),
        "error": rec.get("error"), "node_ip": rec.get("node_ip"),
        "device": last.get("device"), "device_name": last.get("device_name"),
        "gpu_ids": None if last.get("gpu_ids") is None else ",".join(last["gpu_ids"]),
        "deterministic": last.get("deterministic"), "tf32": last.get("tf32"),
        "trial_dir": _trial_dir(sweep_dir, path),
    }


def _trial_dir(sweep_dir: Path, path: str | None) -> str | None:
    """The trial's folder relative to the sweep directory (so a copied sweep still finds its
    samples); sweeps of gansweep 0.1 recorded absolute paths of search trials."""
    if path is None:
        return None
    relative = path if not Path(path).is_absolute() else Path(path).name
    return str(relative) if (sweep_dir / relative).is_dir() else None


def write_parquet(frame: pd.DataFrame, schema: pa.Schema, path: Path, meta: dict) -> None:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           **{f"gansweep.{k}": str(v) for k, v in meta.items()}})
    atomic_write(path, lambda f: pq.write_table(table, f))


def table_meta(tables: SweepTables) -> dict[str, Any]:
    """What every Parquet table of a sweep carries in its metadata: the spec that made it."""
    return {"sweep": tables.name, "spec": tables.spec_text, "expected": tables.expected,
            "max_iters": tables.max_iters}


def write_tables(tables: SweepTables, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write both Parquet files (atomically; the same sweep state gives the same files).
    Their metadata carries the sweep spec that made them."""
    out = Path(out_dir) if out_dir is not None else tables.sweep_dir / "gansweep"
    out.mkdir(parents=True, exist_ok=True)
    meta = table_meta(tables)
    paths = out / TRIALS_PARQUET, out / METRICS_PARQUET
    write_parquet(tables.trials, TRIAL_SCHEMA, paths[0], meta)
    write_parquet(tables.metrics, METRIC_SCHEMA, paths[1], meta)
    return paths
