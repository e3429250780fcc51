"""The sweep's trial record: append-only logs as the truth, a compacted snapshot, end
markers; readers always see every event."""
import io
import json
import pickle

import pytest

from gansweep.core.trial import Trial
from gansweep.sweep.record.state import (
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

    from gansweep.sweep.run import tune_state
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
    from gansweep.sweep.run.reporter import SweepReporter
    from gansweep.sweep.spec.validate import parse_spec

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
                             "interval) (best of the search, not confirmed)"), lines[0]
    assert len(lines) == 3 and lines[2].split() == ["freeze", "seed", "0", "iteration", "0",
                                                    "score", "(is)", "-"]


# --- the structured search's log (sweep.run.searcher) ---------------------------------------

DS3 = ["D(0,0,5)", "D(3,0,2)", "D(1,2,2)"]
GS3 = ["G(0,0,5)", "G(3,0,2)", "G(1,2,2)"]


def _search_grid(seeds=(0, 1)) -> list[Trial]:
    settings = [{"label": d + g, "d": d, "g": g} for d in DS3 for g in GS3] + \
        [{"label": "fine-tune", "baseline": "fine-tune"}]
    trials = [Trial(source="s.pt", target="t", seed=s, **setting)
              for setting in settings for s in seeds]
    return [Trial.from_dict({**t.to_dict(), "index": n}) for n, t in enumerate(trials)]


def test_killed_searcher_resumes_each_lost_cell_under_a_new_id(tmp_path):
    """Tune's searcher, driven as Tune drives it (2 trials at a time), is killed some steps
    after Tune's last snapshot, its log's last line cut short; a new one replays the log and
    hands out the cells Tune lost first, under new trial ids, with no cell repeated or
    lost; ``status`` reads what it plans from the log."""
    from gansweep.sweep.record.state import SEARCH_LOG
    from gansweep.sweep.run.searcher import StructuredSearcher, _rebuilt
    from gansweep.sweep.spec.schema import Search

    trials = _search_grid()

    def make() -> StructuredSearcher:
        return StructuredSearcher(tmp_path, trials, Search("structured", max_pairs=5), "fid",
                                  max_iters=10, max_concurrent=2)

    def value(index: int) -> float:
        t = trials[index]
        return 300.0 + DS3.index(t.d or "D(0,0,5)") * 7 + GS3.index(t.g or "G(0,0,5)") * 3

    ids = (f"{n:08x}" for n in range(10_000))
    created: list[tuple[str, int]] = []  # every trial Tune made: (trial id, index)
    first, live = make(), []
    for k in range(8):
        while len(live) < 2:
            trial_id = next(ids)
            config = first.suggest(trial_id)
            assert isinstance(config, dict), config
            created.append((trial_id, int(config["cell"].split(":")[0])))
            live.append(trial_id)
        if k == 4:  # Tune's snapshot: these trials it will restore
            tune_knew, tune_live = [i for i, _ in created], list(live)
        ended = live.pop(0)
        first.on_trial_complete(ended, {"iteration": 10, "score": value(first.ids[ended])})
    lost = [n for i, n in first.ids.items() if i not in tune_knew and n not in first.search.results]
    assert lost, "the scenario must lose a suggestion to test anything"
    with open(tmp_path / SEARCH_LOG, "ab") as f:
        f.write(b'{"id": "cut", "index": 9')  # the driver died mid-line

    (tmp_path / "experiment_state-2026-12-04_08-00-00.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": i}), "{}"] for i in tune_knew]}))
    second = make()  # the driver was killed; Tune restores its snapshot
    second.restore(str(tmp_path / "searcher-state-2026-12-04_08-00-00.pkl"))
    assert second.again == lost
    assert second.search.to_dict() == {**first.search.to_dict()}
    again = [second.suggest(next(ids)) for _ in lost]  # first, whatever is running
    assert [int(c["cell"].split(":")[0]) for c in again] == lost and \
        not any("key" in c for c in again)  # cell-keyed: no old trial id carried
    live = [i for i in tune_live if first.ids[i] not in first.search.results] + \
        [i for i, n in second.ids.items() if n in lost]
    handed = [n for _, n in created] + lost  # the lost ones twice, by design
    while True:
        while len(live) < 2:
            trial_id = next(ids)
            config = second.suggest(trial_id)
            if not isinstance(config, dict):
                break
            handed.append(int(config["cell"].split(":")[0]))
            live.append(trial_id)
        if not live:
            break
        ended = live.pop(0)
        second.on_trial_complete(ended, {"iteration": 10, "score": value(second.ids[ended])})
    assert len(handed) == len(set(handed)) + len(lost), "a cell was handed out twice"
    assert set(second.search.given) == set(handed) == set(second.search.results)
    state = SweepState.create(tmp_path, "s", len(trials), 10)
    assert state.search_state == {"planned": len(set(handed)), "finished": True}
    # Tune pickles the searcher into tuner.pkl as where to rebuild it from, not whole
    assert second.__reduce__() == (_rebuilt, (str(tmp_path), 10, 2))


@pytest.mark.slow
def test_a_state_tune_cannot_restore_is_refused_not_started_over(tmp_path):
    """Tune, failing to restore an experiment (here it has no snapshot, as when the only one
    was cut short and set aside), logs it and starts the experiment over, every trial under a
    new id: what made the storage test once end with its three trials run twice. The driver
    stops there instead, with one line, having started nothing."""
    import ray
    from ray import tune

    from gansweep.core.errors import GansweepError
    from gansweep.sweep.run.driver import _fit

    ran = tmp_path / "ran"

    def trainable(config):
        ran.touch()

    tune.Tuner(trainable, run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path)))
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        with pytest.raises(GansweepError, match=r"cannot resume .*exp: Ray Tune could not "
                                                r"restore its state \(ValueError: Tried to"):
            _fit(tune.Tuner.restore(str(tmp_path / "exp"), trainable=trainable),
                 tmp_path / "exp")
    finally:
        ray.shutdown()
    assert not ran.exists()
