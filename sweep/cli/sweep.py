"""Commands for sweeps: specs, launch, resume, status, report, replay, demo. Each command's
parser is beside its handler."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gansweep.core.config import MAX_SEED
from gansweep.sweep.cli.main import (
    add_inception,
    add_quiet,
    command,
    integers,
    number,
    output,
    text,
)


def finished(sweep_dir: Path) -> None:
    """The end-of-sweep lines: where it is, its status (the verdict's winner first), the
    tables and the report, and the verdict itself."""
    from gansweep.sweep.cli.listing import status_text
    from gansweep.sweep.record.storage import Mirror

    mirror = Mirror.of_local(sweep_dir)
    print(f"sweep finished: {mirror.uri if mirror else sweep_dir}")
    print(status_text(sweep_dir))
    print(f"report: {write_results(sweep_dir)}")


def run_sweep(command: str, go) -> int:
    """Run a launch or resume (``go`` returns its sweep directory) to its end lines; a
    signal that stopped it (``sweep.run.interrupts``) is one line saying how to resume, exit
    130."""
    from gansweep.sweep.run.interrupts import EXIT_CODE, SweepInterrupted

    try:
        sweep_dir = go()
    except SweepInterrupted as e:
        print(f"gansweep {command}: {e}", file=sys.stderr, flush=True)
        return EXIT_CODE
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print(f"gansweep {command}: stopped at once by an interrupt (a sweep it had "
              f"started continues with 'gansweep resume')", file=sys.stderr, flush=True)
        return EXIT_CODE
    finished(sweep_dir)
    return 0


def write_results(sweep_dir: Path, out: str | None = None, fid_threshold: float | None = None,
                  quiet: bool = True) -> str:
    """The Parquet tables and report (``results.report.write_results``), pushed to the bucket
    of a sweep on object storage; where the report is."""
    from gansweep.results.report import write_results as write
    from gansweep.sweep.record.storage import publish

    return publish(sweep_dir, write(sweep_dir, out, fid_threshold, quiet))


def _sweep(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("sweep", metavar="NAME_OR_PATH", type=text,
                   help=f"{what}a sweep's name in the storage, or its folder written as a path "
                        f"(with a '/', or '.')")
    _storage(p)


def _storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="PATH_OR_URI", type=text, help="where sweeps live (default "
                   "$GANSWEEP_STORAGE or ./sweeps): a folder every node sees, or a bucket "
                   "(s3://bucket/prefix, gs://...)")


def _specs_args(p: argparse.ArgumentParser) -> None:
    pass


@command("specs", "list the shipped sweep specs with their purpose", _specs_args)
def cmd_specs(a: argparse.Namespace) -> int:
    from gansweep.sweep.spec.files import shipped_dir, shipped_specs

    specs = shipped_specs()
    width = max(map(len, specs))
    for name, description in specs.items():
        print(f"{name.ljust(width)}  {description}")
    print(f"# {len(specs)} shipped specs in {shipped_dir()}; 'gansweep launch NAME' runs one "
          f"(relative paths in it are relative to the current directory)")
    return 0


def _launch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep spec: a YAML file, or the name of a shipped spec "
                                "('gansweep specs' lists them)")
    p.add_argument("--name", type=text, help="sweep name (default: the spec's)")
    _storage(p)
    p.add_argument("--address", type=text, help="join this Ray cluster (HOST:PORT or auto; "
                   "default: start a local Ray)")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")


@command("launch", "run a sweep spec on Ray Tune", _launch_args)
def cmd_launch(a: argparse.Namespace) -> int:
    from gansweep.sweep.spec.files import load_spec
    from gansweep.sweep.spec.grid import describe
    from gansweep.sweep.spec.validate import check_name

    spec = load_spec(a.spec)
    if a.name is not None:
        spec.name = spec.raw["name"] = check_name(a.name, "--name")
    if a.dry_run:
        print(describe(spec))
        print(dry_run_summary(spec, a.storage))
        for problem in spec.problems:
            print(f"warning: {problem} (a real launch refuses this)", file=sys.stderr)
        return 0
    from gansweep.sweep.run.driver import launch

    return run_sweep("launch", lambda: launch(spec, a.storage, a.address))


def dry_run_summary(spec, storage: str | None) -> str:
    """The dry run's last lines: the sweep's name, where it would be stored, and its cost
    in trial-iterations (each phase's trials times the budget's iterations; ASHA and a
    structured search run fewer)."""
    from gansweep.sweep.record.state import check_storage, default_storage
    from gansweep.sweep.record.storage import is_uri, join
    from gansweep.sweep.spec.grid import confirmation_trials

    storage = storage or default_storage()
    if not is_uri(storage):
        check_storage(storage)
    where = join(storage, spec.name) if is_uri(storage) else \
        Path(storage).expanduser().resolve() / spec.name
    taken = "" if is_uri(storage) or not Path(where).exists() else \
        " (taken: a launch there refuses; choose another --name)"
    trials, iters = spec.trials(), spec.budget.iters
    search = len(trials) * iters
    lines = [f"# sweep {spec.name!r}, stored at {where}{taken}",
             f"# cost: at most {search} trial-iterations in the search ({len(trials)} trials "
             f"x {iters} iterations" + ("; ASHA stops some early" if spec.scheduler.type ==
                                        "asha" else "") + ")"]
    if spec.confirms:  # at most: a structured search confirms its top candidates only
        ranked = list(dict.fromkeys(t.setting_key for t in trials if t.baseline is None))
        if spec.confirm is None:
            ranked = ranked[:spec.search.confirm_top]
        confirm = len(confirmation_trials(spec, ranked)[1])
        lines[-1] += (f" + at most {confirm * iters} in the confirmation ({confirm} trials x "
                      f"{iters}) = {search + confirm * iters} trial-iterations")
    return "\n".join(lines)


def _resume_args(p: argparse.ArgumentParser) -> None:
    _sweep(p)
    p.add_argument("--address", type=text, help="join this Ray cluster (HOST:PORT or auto)")
    p.add_argument("--skip-errored", action="store_true", help="do not retry errored trials")


@command("resume", "continue a sweep after a failure", _resume_args)
def cmd_resume(a: argparse.Namespace) -> int:
    from gansweep.sweep.record.state import sweep_dir_of
    from gansweep.sweep.run.driver import resume

    sweep_dir = sweep_dir_of(a.sweep, a.storage)
    return run_sweep("resume", lambda: resume(sweep_dir, a.address, not a.skip_errored))


def _status_args(p: argparse.ArgumentParser) -> None:
    _sweep(p)


@command("status", "trials by state, the winner, compute spent (no Ray)", _status_args)
def cmd_status(a: argparse.Namespace) -> int:
    from gansweep.sweep.cli.listing import status_text
    from gansweep.sweep.record.state import sweep_dir_of

    print(status_text(sweep_dir_of(a.sweep, a.storage)))
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    _sweep(p)
    p.add_argument("--out", metavar="FILE", type=output("file", (".html", ".htm")),
                   help="HTML file (default SWEEP/report.html)")
    p.add_argument("--fid-threshold", type=number(0), help="FID for 'iterations to threshold' "
                   "(default: the scratch baseline's best FID)")
    add_quiet(p)


@command("report", "Parquet tables and the HTML comparison report (no Ray)", _report_args)
def cmd_report(a: argparse.Namespace) -> int:
    from gansweep.core.errors import GansweepError
    from gansweep.sweep.record.state import SweepState, sweep_dir_of, where

    sweep_dir = sweep_dir_of(a.sweep, a.storage)
    if not SweepState.load(sweep_dir).trials:
        raise GansweepError(f"sweep {a.sweep!r} has run no trial yet (its launch stopped "
                            f"before the first one): nothing to report; start it with "
                            f"'gansweep resume {where(sweep_dir)}'")
    out = write_results(sweep_dir, a.out, a.fid_threshold, a.quiet)
    print(f"report: {out}")
    return 0


def _replay_args(p: argparse.ArgumentParser) -> None:
    _sweep(p, "a grid (every trial run to the end), or a file --export wrote (as a path): ")
    p.add_argument("--export", metavar="FILE", type=output("file"),
                   help="also write the grid's recorded "
                   "evaluations to FILE (gzipped JSON), to replay without the sweep directory")
    p.add_argument("--scheduler", action="append", metavar="SETTING",
                   help="'today' (0.1's ASHA: last FID, no noise margin), 'spec' (the sweep's "
                        "own), 'none' (every trial to the end), or NAME:key=value,... with "
                        "grace, rf, score (last|mean|best), window, noise (k), rung (0|1); "
                        "repeat to compare (default: today and spec)")
    p.add_argument("--searcher", action="append", metavar="SEARCHER",
                   help="what chooses the trials: 'grid' (every trial, in a random order: "
                        "the default), 'structured' (sweep.searchers.structured) or 'random' (the "
                        "baselines, then random pairs, as many as structured runs), the last "
                        "two optionally as NAME:key=value,... with max_pairs, fraction, stop; "
                        "repeat to compare. Each is replayed with each --scheduler (here "
                        "also 'none': every trial to the end)")
    p.add_argument("--orders", type=integers(1), default=100, help="random trial orders (a "
                   "searcher's: design draws) per seed and concurrency (default %(default)s)")
    p.add_argument("--concurrency", type=integers(1, many=True), default="1,4,16",
                   help="trials at a time, comma-separated (default %(default)s)")
    p.add_argument("--seed", type=integers(0, high=MAX_SEED), default=0,
                   help="of the random orders")


@command("replay", "measure schedulers on a finished grid by replaying its recorded "
                   "evaluations (seconds, no GPU)", _replay_args)
def cmd_replay(a: argparse.Namespace) -> int:
    from gansweep.sweep.record.state import is_path, sweep_dir_of
    from gansweep.sweep.replays.options import parse_variant
    from gansweep.sweep.replays.schedulers import load_recording, replay_many
    from gansweep.sweep.replays.searchers import parse_searcher, replay_searcher

    searchers = [parse_searcher(s) for s in a.searcher or []]
    source = Path(a.sweep) if is_path(a.sweep) and Path(a.sweep).is_file() else \
        sweep_dir_of(a.sweep, a.storage)
    recording = load_recording(source)
    variants = [parse_variant(v, recording.scheduler, recording.metric, recording.max_iters)
                for v in a.scheduler or ["today", "spec"]]
    if a.export:
        recording.save(a.export)
        print(f"recording of {recording.name} ({len(recording.trials)} trials) written to "
              f"{a.export}")
    concurrency = a.concurrency  # a list (the option's type)
    print(f"replaying {recording.name}: {len(recording.trials)} trials x "
          f"{recording.max_iters} iterations, seeds {recording.seeds}, metric "
          f"{recording.metric}; {a.orders} random orders x concurrency {concurrency} per seed")
    if not searchers:
        for variant in variants:
            print(replay_many(recording, variant, a.orders, concurrency, a.seed).line(),
                  flush=True)
        return 0
    for searcher in searchers:
        for variant in variants:
            print(replay_searcher(recording, searcher, variant, a.orders, concurrency,
                                  a.seed).line(), flush=True)
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="gansweep-demo", type=output("dir"), metavar="DIR",
                   help="where the demo makes its data, source and sweeps")
    add_inception(p)


@command("demo", "make data, pretrain a tiny source, run a small sweep", _demo_args)
def cmd_demo(a: argparse.Namespace) -> int:
    from gansweep.sweep.cli.demo import run_demo

    return run_sweep("demo", lambda: run_demo(Path(a.out), a.inception_weights))


def _ls_args(p: argparse.ArgumentParser) -> None:
    _storage(p)
    p.add_argument("--json", action="store_true", help="one JSON list, for scripts")


@command("ls", "the sweeps in a storage: state, trials done/expected, winner so far, last "
               "change (no Ray)", _ls_args)
def cmd_ls(a: argparse.Namespace) -> int:
    import json

    from gansweep.sweep.cli.listing import ls_rows, ls_text

    rows = ls_rows(a.storage)
    if a.json:
        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")}
                          for r in rows], indent=1))
    else:
        print(ls_text(rows, a.storage))
    return 0


def _best_args(p: argparse.ArgumentParser) -> None:
    _sweep(p)
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")


@command("best", "the winner: its setting, interval, spec fragment, checkpoint and how to "
                 "sample from it (no Ray)", _best_args)
def cmd_best(a: argparse.Namespace) -> int:
    import json

    from gansweep.sweep.cli.listing import best, best_text
    from gansweep.sweep.record.state import sweep_dir_of

    found = best(sweep_dir_of(a.sweep, a.storage))
    print(json.dumps(found, indent=1) if a.json else best_text(found))
    return 0
