"""Ranking: the rung score rules, the noise-aware ASHA (Ray's decisions when k = 0), replay,
and the confirmation phase's selection and intervals. No Ray cluster is started here."""
import json
import math
import random

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gansweep.core.errors import GansweepError
from gansweep.core.trial import Trial
from gansweep.sweep.replays.options import parse_variant
from gansweep.sweep.replays.schedulers import (
    RecordedTrial,
    Recording,
    load_recording,
    replay,
    replay_many,
    replay_sequence,
)
from gansweep.sweep.run.scheduler import RobustASHA
from gansweep.sweep.spec.ranking import ScoreRule, interval, paired, rank_settings, score
from gansweep.sweep.spec.schema import Scheduler
from tests.helpers import cli_in_process


class T:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def asha(noise=0.0, cls=RobustASHA, **kw):
    args = dict(time_attr="iteration", metric="score", mode="min", max_t=8, grace_period=1,
                reduction_factor=2)
    args.update(kw)
    return cls(None, noise=noise, **args) if cls is RobustASHA else cls(**args)


def decide(s, trial_id, iteration, value, sd=None):
    return s.on_trial_result(None, T(trial_id), {"iteration": iteration, "score": value,
                                                 "score_sd": sd})


def test_noise_rule_keeps_a_trial_within_noise_and_stops_one_clearly_worse():
    for noise, expected in ((1.0, (TrialScheduler.CONTINUE, TrialScheduler.STOP)),
                            (0.0, (TrialScheduler.STOP, TrialScheduler.STOP))):
        s = asha(noise)
        for t in "abcd":
            s.on_trial_add(None, T(t))
        decide(s, "a", 1, 100.0, 5.0)
        decide(s, "b", 1, 110.0, 5.0)  # cutoff at the rung: the median, 105
        within = decide(s, "c", 1, 108.0, 5.0)  # 3 worse: within one sd (k = 1)
        worse = decide(s, "d", 1, 130.0, 5.0)  # 25 worse: stopped either way
        assert (within, worse) == expected, noise


def test_without_noise_the_decisions_are_rays():
    rng = random.Random(0)
    ours, rays = asha(0.0), asha(cls=ASHAScheduler)
    ids = [f"t{i}" for i in range(30)]
    for t in ids:
        ours.on_trial_add(None, T(t))
        rays.on_trial_add(None, T(t))
    live = {t: 0 for t in ids}
    while live:
        t = rng.choice(sorted(live))
        live[t] += 1
        result = {"iteration": live[t], "score": rng.gauss(100, 10), "score_sd": 3.0}
        a = ours.on_trial_result(None, T(t), result)
        b = rays.on_trial_result(None, T(t), result)
        assert a == b
        if a == TrialScheduler.STOP:
            del live[t]


def test_score_rules():
    history = [{"fid": 300.0, "fid_sd": 3.0}, {"fid": 290.0, "fid_sd": 4.0},
               {"fid": 295.0, "fid_sd": 5.0, "fid_rung": 280.0, "fid_rung_sd": 2.0}]
    assert score(history[:2], "fid", ScoreRule("last")) == (290.0, 4.0)
    assert score(history, "fid", ScoreRule("last")) == (280.0, 2.0)  # the rung's FID
    assert score(history[:2], "fid", ScoreRule("best")) == (290.0, 4.0)
    mean, sd = score(history, "fid", ScoreRule("mean", 2))
    assert mean == 285.0 and sd == pytest.approx(math.sqrt(4 ** 2 + 2 ** 2) / 2)
    assert score(history + [{"fid": math.inf}], "fid", ScoreRule("mean", 2))[0] == math.inf
    assert score([{"iw": -3.0}, {"iw": -1.0}], "iw", ScoreRule("best")) == (-1.0, None)
    with pytest.raises(GansweepError, match="scheduler.score: 'median'"):
        ScoreRule("median")


def test_intervals_and_paired_differences():
    ci = interval([10.0, 12.0, 14.0])
    assert ci.mean == 12.0 and ci.low == pytest.approx(12 - 4.302653 * 2 / math.sqrt(3))
    assert interval([5.0]).n == 1 and "no interval" in str(interval([5.0]))
    d = paired({1: 10.0, 2: 12.0, 3: 11.0}, {1: 20.0, 2: 21.5, 3: 20.5, 4: 0.0})
    assert d.n == 3 and d.mean == pytest.approx(-9.666667) and d.excludes_zero
    assert not paired({1: 1.0, 2: 3.0}, {1: 2.0, 2: 2.0}).excludes_zero


def test_rank_settings_prefers_depth_then_score():
    def rec(setting, it, value, status="finished", seed=0):
        config = Trial(label=setting, source="s.pt", target="t", baseline=setting, seed=seed)
        return {"config": config.to_dict(), "iteration": it, "status": status,
                "last": {"score": value}}
    records = [rec("a", 8, 300.0), rec("a", 8, 310.0, seed=1), rec("b", 8, 290.0),
               rec("c", 2, 100.0, "stopped"), rec("d", 8, 1.0, "errored")]
    ranked = rank_settings(records, "fid")
    assert [json.loads(k)["label"] for k, _, _ in ranked] == ["b", "a", "c"]
    assert ranked[1][1] == 305.0
    # a metric where higher is better ranks the other way (its registry entry says so)
    assert [json.loads(k)["label"] for k, _, _ in rank_settings(records, "is")] == \
        ["a", "b", "c"]


def _recording(values: dict[str, list[float]], seeds=(0,)) -> Recording:
    """Trials whose FID follows ``values`` at iterations 1, 2, ...; 1 s per iteration."""
    trials = [RecordedTrial(f"{name}{s}", name, name, s,
                            [{"iteration": i + 1, "fid": v + s, "fid_sd": 1.0,
                              "time_total_s": float(i + 1)} for i, v in enumerate(curve)])
              for name, curve in values.items() for s in seeds]
    return Recording("toy", "fid", len(next(iter(values.values()))), trials)


def test_replay_stops_what_asha_stops_and_scores_the_pick():
    # 'late' looks worst at the first rung but ends best: ASHA (grace 1, rf 2) stops it
    # when it is not the first to report; a 3-sd noise margin keeps it.
    rec = _recording({"early": [100, 100, 100, 100], "late": [103, 99, 90, 80],
                      "bad": [130, 130, 130, 130], "mid": [101, 101, 101, 101]})
    base = Scheduler(grace_period=1, reduction_factor=2)
    today = parse_variant("today", base)
    order = [t for name in ("early", "mid", "bad", "late") for t in rec.trials
             if t.label == name]
    o = replay(rec, today, order, concurrency=1)
    assert o.stops == {"early0": 4, "mid0": 1, "bad0": 1, "late0": 1}
    assert o.pick == "early" and o.spent_s == 4 + 1 + 1 + 1 and o.full_s == 16
    lenient = parse_variant("soft:noise=3", base)
    assert replay(rec, lenient, order, concurrency=1).pick == "late"
    summary = replay_many(rec, today, orders=20, concurrency=[1, 2])
    assert len(summary.regret) == 40 and min(summary.regret) == 0.0
    assert set(summary.regret) <= {0.0, (100 - 80) / 80, (101 - 80) / 80}
    # The recorded order of a live run gives the same stops as the timed replay.
    sequence = [(t.trial_id, e["iteration"]) for t in order for e in t.evaluations]
    assert replay_sequence(rec, today, sequence)["late0"] == 1


def test_an_exported_recording_replays_as_the_original(tmp_path):
    rec = _recording({"early": [100, 100, 100], "late": [103, 90, 80], "bad": [130, 120, 125]},
                     seeds=(0, 1))
    rec.scheduler = Scheduler(grace_period=1, reduction_factor=2, noise=1.0)
    rec.save(tmp_path / "grid.json.gz")
    back = load_recording(tmp_path / "grid.json.gz")
    assert back == rec
    variant = parse_variant("spec", back.scheduler)
    assert variant.noise == 1.0 and variant.grace == 1
    assert replay_many(back, variant, 5, [1, 2]) == replay_many(rec, variant, 5, [1, 2])
    out = cli_in_process("replay", tmp_path / "grid.json.gz", "--orders", "3",
                         "--concurrency", "1", "--export", tmp_path / "again.json.gz")
    assert out.returncode == 0, out.stderr
    assert "replaying toy: 6 trials" in out.stdout and "spec: grace 1, rf 2" in out.stdout
    assert load_recording(tmp_path / "again.json.gz") == rec
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(GansweepError, match="not a recording exported"):
        load_recording(tmp_path / "bad.json.gz")


def test_replay_variant_errors():
    base = Scheduler(grace_period=1, reduction_factor=2)
    assert parse_variant("x:grace=3,rf=4,score=mean,window=2,noise=1.5,rung=0",
                         base).rule == ScoreRule("mean", 2)
    for text, fragment in (("x:graze=3", "unknown key 'graze'"), ("x:rf=fast", "rf='fast'"),
                           ("bogus", "give 'today', 'spec'")):
        with pytest.raises(GansweepError, match=fragment):
            parse_variant(text, base)


def test_verdict_states_the_interval_and_when_the_runner_up_is_a_tie():
    from gansweep.results.summary import Verdict

    win, second = interval([280.0, 284.0, 282.0]), interval([281.0, 290.0, 283.0])
    tie = Verdict(True, "fid", "fid (mean of the last 2 evaluations)",
                  [("D(1,0,4)G(1,2,2)", win), ("fine-tune", second)],
                  {"fine-tune": paired({0: 280, 1: 284, 2: 282}, {0: 281, 1: 290, 2: 283}),
                   "scratch": paired({0: 280, 1: 284, 2: 282}, {0: 320, 1: 330, 2: 325}),
                   "runner-up": paired({0: 280, 1: 284, 2: 282}, {0: 281, 1: 290, 2: 283})}, 0)
    text = tie.text()
    assert text.startswith("Winner on the confirmation seeds: D(1,0,4)G(1,2,2), fid (mean")
    assert f"{win}" in text and "[95% interval]" in text
    assert ("On the same seeds, D(1,0,4)G(1,2,2) is lower (better) than scratch by 43.00 "
            "[35.55, 50.45] on 3 seeds (a real difference).") in text
    assert ("It cannot be told apart from the runner-up, fine-tune: D(1,0,4)G(1,2,2) is lower "
            "(better) than fine-tune by 2.67 [-4.50, 9.84] on 3 seeds") in text
    assert "than fine-tune" not in text.split("runner-up")[0]  # said once, as the runner-up
    clear = Verdict(True, "fid", "fid", [("a", win), ("b", second)],
                    {"runner-up": paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 9.0, 1: 10.5, 2: 11.0})},
                    2)
    assert "a is lower (better) than the runner-up, b, by 8.17 [7.45, 8.88] on 3 seeds." \
        in clear.text()
    higher = Verdict(True, "is", "is", [("a", second), ("b", win)],
                     {"runner-up": paired({0: 9.0, 1: 10.5, 2: 11.0}, {0: 1.0, 1: 2.0, 2: 3.0}),
                      "scratch": paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 2.5, 2: 4.0})}, 0)
    assert "a is higher (better) than the runner-up, b, by 8.17 [7.45, 8.88]" in higher.text()
    assert "a is lower (worse) than scratch by 0.83 [" in higher.text()
    assert "2 confirmation trials have no final score yet" in clear.text()
    unconfirmed = Verdict(False, "fid", "fid", [("a", interval([300.0]))], {}, 0)
    assert "Not confirmed" in unconfirmed.text() and "no interval" in unconfirmed.text()
