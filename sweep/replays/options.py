"""``gansweep replay``'s scheduler settings: ``--scheduler``'s text -> a ``Variant``, each
value in the range a spec's scheduler section has (``sweep.spec.ranges``), and the
``key=value,...`` reading ``--searcher`` shares (``sweep.replays.searchers``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gansweep.core.errors import GansweepError
from gansweep.sweep.spec.ranges import check_scheduler
from gansweep.sweep.spec.ranking import ScoreRule
from gansweep.sweep.spec.schema import Scheduler


@dataclass(frozen=True)
class Variant:
    """A scheduler setting to replay: ASHA's rungs, the score rule, the noise margin k, and
    whether rung decisions use the larger-sample FID recorded at the rungs."""

    name: str
    grace: int
    rf: float
    rule: ScoreRule = field(default_factory=ScoreRule)
    noise: float = 0.0
    rung_samples: bool = False
    stops: bool = True  # False: no scheduler, every trial runs to the end ('none')

    def __str__(self) -> str:
        if not self.stops:
            return f"{self.name}: every trial to the end, score {self.rule.rule}"
        return (f"{self.name}: grace {self.grace}, rf {self.rf:g}, score {self.rule.rule}"
                + (f"/{self.rule.window}" if self.rule.rule == "mean" else "")
                + f", noise {self.noise:g}" + (", rung samples" if self.rung_samples else ""))


# --scheduler's keys: the Scheduler field each sets (its range: sweep.spec.ranges) and its
# type; rung is a flag of the replay's own (decide on the recorded rung FID: 0 or 1)
KEYS = {"grace": ("grace_period", int), "rf": ("reduction_factor", float),
        "score": ("score", str), "window": ("window", int), "noise": ("noise", float),
        "rung": ("rung", int)}


def parse_options(flag: str, text: str, body: str, keys: dict[str, type]) -> dict[str, Any]:
    """``key=value,...`` of a replay option (``body`` of ``text``), each value of its key's
    type; an unknown key or a bad value is one line naming it."""
    values: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in keys:
            raise GansweepError(f"{flag} {text!r}: unknown key {key!r}; valid: "
                                f"{', '.join(keys)}")
        try:
            values[key] = keys[key](value)
        except ValueError:
            raise GansweepError(f"{flag} {text!r}: {key}={value!r} is not "
                                f"{keys[key].__name__}") from None
    return values


def parse_variant(text: str, base: Scheduler, metric: str = "fid",
                  iters: int | None = None) -> Variant:
    """``today`` (ASHA deciding on the last FID, stopping on any deficit: gansweep 0.1),
    ``spec`` (the sweep's own scheduler section), ``none`` (no scheduler: every trial to the
    end), or ``NAME:key=value,...`` with keys grace, rf, score (last|mean|best), window,
    noise, rung (0|1), over the spec's settings, each in the range a spec's scheduler
    section has (``sweep.spec.ranges.check_scheduler``) for the recording's ``metric`` and
    ``iters``."""
    spec = Variant("spec", base.grace_period, base.reduction_factor, base.rule, base.noise,
                   base.rung_fid_samples is not None)
    if text == "spec":
        return spec
    if text == "none":
        return replace(spec, name="none", rung_samples=False, stops=False)
    if text == "today":
        return replace(spec, name="today", rule=ScoreRule(), noise=0.0, rung_samples=False)
    name, _, body = text.partition(":")
    if not body:
        raise GansweepError(f"--scheduler {text!r}: give 'today', 'spec' or NAME:key=value,... "
                            f"with keys {', '.join(KEYS)}")
    values = parse_options("--scheduler", text, body, {k: t for k, (_, t) in KEYS.items()})
    rung = values.pop("rung", int(spec.rung_samples))
    if rung not in (0, 1):
        raise GansweepError(f"--scheduler {text!r}: rung: {rung} must be 0 or 1")
    key_of = {f: k for k, (f, _) in KEYS.items()}
    given = {"grace_period": spec.grace, "reduction_factor": spec.rf, "score": spec.rule.rule,
             "window": spec.rule.window, "noise": spec.noise,
             **{KEYS[k][0]: v for k, v in values.items()}}
    s = check_scheduler(Scheduler(**given), metric,
                        lambda f: f"--scheduler {text!r}: {key_of.get(f, f)}", iters)
    return Variant(name, s.grace_period, s.reduction_factor, s.rule, s.noise, bool(rung))
