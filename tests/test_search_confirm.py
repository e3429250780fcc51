"""The structured search's confirmation (issue 36): its candidates and pick rule, the replay's
measure at several budgets from one replay, the held-out truth and the spec's keys. (A tiny
live sweep whose confirmation and verdict make the replay's choices on the same results:
tests/test_sweep.py, killed and resumed on the way.)"""
from __future__ import annotations

import numpy as np
import pytest

from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS
from gansweep.sweep.replays.options import parse_variant
from gansweep.sweep.replays.schedulers import load_recording
from gansweep.sweep.replays.searchers import parse_searcher, replay_budgets, replay_searcher
from gansweep.sweep.replays.summary import held_out
from gansweep.sweep.searchers.confirm import candidates, pick, settings_run
from gansweep.sweep.searchers.structured import StructuredSearch
from gansweep.sweep.spec.schema import Search
from tests.test_search import ROOT, additive, grid, pair_of

FID = METRICS.get("fid")
RECORDINGS = [ROOT / "benchmarks" / "recordings" / f"emoji-study-s{s}.json.gz" for s in (0, 1, 2)]


def three_seeds():
    from benchmarks.bench_search import combined
    return combined([load_recording(p) for p in RECORDINGS])


def test_candidates_alternate_observed_and_predicted_and_the_pick_is_on_the_mean():
    """Top 3: the best observed, the best by the posterior mean (another setting), the
    second observed; the pick is the candidate with the lowest mean over its search and
    confirmation values, not the lowest single seed."""
    trials = grid()
    search = StructuredSearch(trials, Search("structured", max_pairs=36), FID.loss)
    truth, rng = additive(np.random.default_rng(3)), np.random.default_rng(4)
    for n, t in enumerate(trials):
        pair = pair_of(t)
        search.observe(n, 340.0 if pair is None else truth.get(pair, 330.0) + rng.normal(0, 6))
    run = settings_run(search)
    observed = sorted(run, key=lambda k: run[k][0])
    predicted = [k for k in sorted(run, key=lambda k: run[k][1]) if k != observed[0]]
    top = candidates(search, 3)
    assert top[0] == observed[0] and top[1] == predicted[0]
    assert top[2] == next(k for k in observed[1:] if k != predicted[0])
    # the best single seed loses to a candidate whose confirmation is much better
    first, second = top[0], top[1]
    assert pick(search, top[:2], {first: [run[first][0] + 40], second: [run[second][0]]}) \
        == second
    assert pick(search, top[:2], {first: [run[first][0]], second: [run[second][0] + 40]}) \
        == first
    assert pick(search, [], {}) == observed[0]  # no confirmation: the lowest observed


def test_replay_at_several_budgets_equals_a_replay_at_each():
    """One replay at the largest budget, measured at its first B pairs (and confirming what
    those leave), gives the figures of a replay at budget B, confirmation included."""
    rec = three_seeds()
    none = parse_variant("none", rec.scheduler)
    many = replay_budgets(rec, parse_searcher("structured"), none, 2, [1, 4], budgets=[4, 6])
    for b in (4, 6):
        one = replay_searcher(rec, parse_searcher(f"structured:max_pairs={b}"), none, 2, [1, 4])
        assert one.regret == many[b].regret and one.compute == many[b].compute
        assert one.held == many[b].held and one.found == many[b].found
    with pytest.raises(GansweepError, match="scheduler 'none'"):
        replay_budgets(rec, parse_searcher("structured"),
                       parse_variant("grace40:grace=40,rf=4", rec.scheduler), 1, [1],
                       budgets=[4])


def test_confirmation_counts_in_compute_and_is_judged_on_a_held_out_seed():
    """The confirmation's 2 trials on the next seed add their recorded seconds to the
    compute, and the held-out truth is the one seed neither searched nor confirmed on."""
    rec = three_seeds()
    none = parse_variant("none", rec.scheduler)
    assert held_out(rec, 0) == [2] and held_out(rec, 1) == [0] and held_out(rec, 2) == [1]
    with_ = replay_searcher(rec, parse_searcher("structured:max_pairs=5"), none, 2, [1])
    without = replay_searcher(rec, parse_searcher("structured:max_pairs=5,confirm_top=0"),
                              none, 2, [1])
    full = {s: sum(t.evaluations[-1]["time_total_s"] for t in rec.trials if t.seed == s)
            for s in rec.seeds}
    extra = np.array(with_.compute) - np.array(without.compute)
    cheapest = min(t.evaluations[-1]["time_total_s"] for t in rec.trials)
    # two whole trials more, each at least the grid's cheapest trial
    assert (extra >= 2 * cheapest / max(full.values()) - 1e-9).all()
    assert len(with_.held) == len(with_.regret) == 6
    with pytest.raises(GansweepError, match="confirm_seeds=3"):
        replay_searcher(rec, parse_searcher("structured:confirm_seeds=3"), none, 1, [1])


def test_every_row_is_judged_on_the_same_held_out_seed():
    """A row's confirm_seeds does not move its held-out seed: a search that does not confirm
    is judged on it whatever its confirm_seeds; one that confirms there reports no held-out
    regret rather than one on other seeds."""
    rec = three_seeds()
    none = parse_variant("none", rec.scheduler)
    grid_row = replay_searcher(rec, parse_searcher("grid"), none, 1, [1])
    quiet = replay_searcher(rec, parse_searcher("structured:max_pairs=4,confirm_top=0,"
                                                "confirm_seeds=2"), none, 1, [1])
    assert len(grid_row.held) == len(quiet.held) == len(quiet.regret) == 3
    everywhere = replay_searcher(rec, parse_searcher("structured:max_pairs=4,confirm_seeds=2"),
                                 none, 1, [1])
    assert everywhere.held == [] and len(everywhere.regret) == 3


@pytest.mark.parametrize("search, error", [
    ({"type": "structured", "confirm_top": -1}, "search.confirm_top: -1 must be in 0..20"),
    ({"type": "structured", "confirm_seeds": 0}, "search.confirm_seeds: 0 must be in 1..10"),
    ({"type": "structured", "confirm_top": 1.5}, "search.confirm_top: 1.5 is not an integer"),
    ({"confirm_top": 2}, "apply to type 'structured'")])
def test_search_confirmation_keys_are_checked(search, error):
    from gansweep.sweep.spec.validate import _search
    with pytest.raises(GansweepError, match=error.replace("(", r"\(").replace(".", r"\.")):
        _search(search, [("D(0,0,5)", "G(0,0,5)")], [])
    assert _search({"type": "structured", "confirm_top": 3}, [("D(0,0,5)", "G(0,0,5)")],
                   []) == Search("structured", confirm_top=3)


# A live structured sweep confirming as the replay would, killed and resumed on the way:
# tests/test_sweep.py::test_killed_structured_sweep_resumes_and_confirms_as_the_replay_would


def test_replay_cli_says_when_a_recording_cannot_confirm():
    """One recorded seed: the structured search cannot confirm there, and says so in one
    line naming confirm_top=0."""
    from tests.helpers import assert_one_clear_line, cli_in_process
    out = cli_in_process("replay", RECORDINGS[0], "--searcher", "structured:max_pairs=6",
                         "--scheduler", "none", "--orders", "1", "--concurrency", "1")
    assert_one_clear_line(out, "replay", "confirm_top=0")
    ok = cli_in_process("replay", RECORDINGS[0], "--searcher",
                        "structured:max_pairs=6,confirm_top=0", "--scheduler", "none",
                        "--orders", "1", "--concurrency", "1")
    assert ok.returncode == 0, ok.stderr
