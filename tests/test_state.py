"""The sweep's trial record: append-only logs as the truth, a compacted snapshot, end
markers; readers always see every event."""
import io
import json
import pickle

from gansweep.core.trial import Trial
from gansweep.sweep.state import (
    EVENTS_FILE,
    RESULTS_FILE,
    TRIALS_FILE,
    SweepState,
    done_record,
)


def _trial(seed: int = 0) -> dict:
    return Trial("fine-tune", "/src.pt", "/t", None, None, "fine-tune", "adafm", None, None,
                 "none", None, None, "pretrained", "pretrained", seed).to_dict()


def _run(state: SweepState, tid: str, fids: list[float], status: str = "finished") -> None:
    state.event("start", tid, config=_trial(), path=tid)
    for k, fid in enumerate(fids, start=1):
        state.result(tid, {"iteration": 2 * k, "fid": fid, "score": fid, "time_total_s": k})
    state.event("end", tid, status=status)
    state.mark_done(tid)


def test_readers_see_every_event_without_a_compaction(tmp_path):
    state = SweepState.create(tmp_path, "s", 3, 4)
    state.save()
    _run(state, "a", [300.0, 290.0])
    state.event("start", "b", config=_trial(1), path="b")
    state.result("b", {"iteration": 2, "fid": 310.0, "time_total_s": 1.0})
    state.event("recover", "b", error="node lost")
    state.event("start", "b", config=_trial(1), path="b")
    # trials.json was written before any event: a reader folds the logs in.
    assert json.loads((tmp_path / TRIALS_FILE).read_text())["trials"] == {}
    seen = SweepState.load(tmp_path)
    assert seen.trials == state.trials
    a, b = seen.trials["a"], seen.trials["b"]
    assert a["status"] == "finished" and a["iteration"] == 4 and a["reports"] == 2
    assert a["best"]["fid"] == 290.0 and a["last"]["score"] == 290.0
    assert b["status"] == "running" and b["failures"] == 1 and len(b["starts"]) == 2
    assert b["starts"][1]["iteration"] == 2
    assert seen.counts() == {"pending": 1, "running": 1, "finished": 1, "stopped": 0,
                             "diverged": 0, "errored": 0}
    assert done_record(tmp_path, "a")["status"] == "finished"
    assert done_record(tmp_path, "b") is None


def test_compaction_covers_what_it_says_and_the_logs_stay(tmp_path):
    state = SweepState.create(tmp_path, "s", 2, 4)
    _run(state, "a", [300.0, 290.0])
    state.save()
    snapshot = json.loads((tmp_path / TRIALS_FILE).read_text())
    assert snapshot["offsets"] == {"events": (tmp_path / EVENTS_FILE).stat().st_size,
                                   "results": (tmp_path / RESULTS_FILE).stat().st_size}
    _run(state, "b", [280.0], status="stopped")
    seen = SweepState.load(tmp_path)  # a does not count twice, b is folded in
    assert seen.trials["a"]["reports"] == 2 and seen.trials["b"]["status"] == "stopped"
    assert len(seen.results()) == 3


def test_a_line_cut_by_a_crash_is_skipped_and_closed(tmp_path):
    state = SweepState.create(tmp_path, "s", 1, 4)
    state.save()
    state.event("start", "a", config=_trial(), path="a")
    with open(tmp_path / RESULTS_FILE, "a") as f:
        f.write('{"trial_id": "a", "iteration": 2, "fi')  # the driver died mid-line
    assert SweepState.load(tmp_path).trials["a"]["reports"] == 0
    resumed = SweepState.load(tmp_path)
    resumed.result("a", {"iteration": 2, "fid": 300.0, "time_total_s": 1.0})
    seen = SweepState.load(tmp_path)
    assert seen.trials["a"]["reports"] == 1 and seen.trials["a"]["last"]["fid"] == 300.0
    assert len(seen.results()) == 1


def test_a_snapshot_of_gansweep_0_1_is_not_counted_twice(tmp_path):
    state = SweepState.create(tmp_path, "s", 1, 4)
    _run(state, "a", [300.0, 290.0])
    old = {k: v for k, v in state.data.items() if k != "offsets"}  # 0.1 had no offsets
    (tmp_path / TRIALS_FILE).write_text(json.dumps(old))
    (tmp_path / EVENTS_FILE).unlink()
    assert SweepState.load(tmp_path).trials["a"]["reports"] == 2


def test_a_tune_snapshot_cut_short_is_restored_from_the_backup(tmp_path, capsys):
    """Tune copies its snapshot and its searcher's state (for the grid a pickle, whatever its
    name) into the sweep from a thread; a killed driver or a full disk can leave either cut
    short, and Tune, failing to restore, would start the sweep over. The driver's last whole
    copy of the pair replaces it; with no copy the pair is set aside. The searcher's state
    goes with its snapshot: from a newer session it would wait for a trial the snapshot
    never had."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from gansweep.sweep import tune_state
    session = "2026-11-24_01-00-00"
    whole = json.dumps({"trial_data": [[str(i), "{}"] for i in range(50)]})
    path = tmp_path / f"experiment_state-{session}.json"
    path.write_text(whole)
    BasicVariantGenerator().save_to_dir(str(tmp_path), session)  # as Tune saves it
    searcher = tmp_path / f"basic-variant-state-{session}.json"
    saved = searcher.read_bytes()
    tune_state.back_up(tmp_path)
    path.write_text(whole[:len(whole) // 2])
    searcher.write_bytes(pickle.dumps({"_live_trials": ["b"]}))  # saved after the backup
    tune_state.back_up(tmp_path)  # a pair cut short never overwrites the copy
    tune_state.repair(tmp_path)
    assert path.read_text() == whole and searcher.read_bytes() == saved
    assert "cut short" in capsys.readouterr().err
    searcher.write_bytes(saved[:len(saved) // 2])  # the snapshot whole, its searcher's state not
    tune_state.repair(tmp_path)
    assert path.read_text() == whole and searcher.read_bytes() == saved
    older = tmp_path / "experiment_state-2026-11-23_01-00-00.json"
    older.write_text(whole)
    (tmp_path / tune_state.BACKUP_DIR / path.name).unlink()
    searcher.write_bytes(saved[:-1])
    tune_state.repair(tmp_path)
    assert not path.exists() and tune_state.newest(tmp_path) == older
    assert not searcher.exists() and searcher.with_name(searcher.name + ".truncated").exists()


def test_sweep_reporter_prints_a_compact_table(tmp_path):
    """One line for the sweep (counts, the winner so far as the verdict names it: by the
    score rule, over trials that ran to the end) and one per running trial; nothing between
    intervals."""
    from types import SimpleNamespace

    from gansweep.core.trial import Trial
    from gansweep.sweep.reporter import SweepReporter
    from gansweep.sweep.validate import parse_spec

    spec = parse_spec({"name": "denton", "source": "src.pt", "target": "t",
                       "arch": {"name": "dcgan", "resolution": 32}, "baselines": ["scratch"],
                       "budget": {"iters": 60, "eval_every": 20}, "metric": "is",
                       "metrics": ["fid", "is"]}, tmp_path, read_sources=False)

    def trial(status, label, iteration, value):
        config = Trial(label=label, source="src.pt", target="t", baseline=label).to_dict()
        return SimpleNamespace(status=status, config={"trial": config},
                               last_result={"iteration": iteration, "score": value})

    trials = [trial("TERMINATED", "scratch", 60, 2.5), trial("RUNNING", "fine-tune", 20, 3.1),
              trial("RUNNING", "freeze", 0, float("nan")), trial("PENDING", "freeze-d", 0, None)]
    out = io.StringIO()
    reporter = SweepReporter(spec, every=60, stream=out)
    assert not reporter.should_report(trials) and reporter.should_report(trials, done=True)
    reporter.report(trials, True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[gansweep denton] ")
    assert lines[0].endswith("1/4 done, 2 running, 1 pending, 0 failed; winner so far: scratch, "
                             "is (of the EMA generator, last evaluation) 2.50 (n = 1: no "
                             "interval) (search, not confirmed)"), lines[0]
    assert len(lines) == 3 and lines[2].split() == ["freeze", "seed", "0", "iteration", "0",
                                                    "score", "(is)", "-"]
