"""The ``gansweep`` command line. Ray is imported only by the sweep commands that need it."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from gansweep.core.errors import GansweepError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn
    return deco


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress output (a bar on a "
                   "terminal, else one line per evaluation, on stderr)")


def _add_fid_options(p: argparse.ArgumentParser, samples: int) -> None:
    p.add_argument("--inception-weights", metavar="PATH",
                   help="FID Inception weights (pytorch-fid layout); default "
                        "$GANSWEEP_INCEPTION_WEIGHTS, else pytorch-fid's download")
    p.add_argument("--fid-samples", type=int, default=samples,
                   help="generated images per FID/KID evaluation (default %(default)s)")
    p.add_argument("--metrics", default="fid,kid",
                   help="comma-separated metrics, or 'none' (default %(default)s)")
    p.add_argument("--lpips-weights", metavar="PATH",
                   help="LPIPS weights for intra_lpips (core/lpips.py); default "
                        "$GANSWEEP_LPIPS_WEIGHTS")
    p.add_argument("--cache-dir", help="where real-data FID statistics are cached "
                                       "(default $GANSWEEP_CACHE or ~/.cache/gansweep)")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda[:N]")
    _add_quiet(p)


def _add_loss_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="loss bce: D's targets drawn from 1 +- S and 0 +- S (Price: 0.2)")
    p.add_argument("--label-noise", type=float, default=0.0,
                   help="loss bce: fraction of D's targets swapped")
    p.add_argument("--r1-gamma", type=float,
                   help="loss stylegan2: weight of the lazy R1 penalty (default 10)")
    p.add_argument("--path-length", type=float, default=0.0,
                   help="loss stylegan2, arch stylegan2: weight of the lazy path-length "
                        "penalty (StyleGAN2's 2; default 0: off)")


def _lr_mult(text: str | None) -> dict[str, float]:
    """'finetune=0.1,reinit=1' -> {'finetune': 0.1, 'reinit': 1.0}."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise GansweepError(f"--lr-mult: {item!r} is not TREATMENT=NUMBER")
    return out


def _metrics(text: str) -> list[str]:
    return [] if text.strip() == "none" else [m.strip() for m in text.split(",") if m.strip()]


@command("pretrain")
def cmd_pretrain(a: argparse.Namespace) -> int:
    from gansweep.core.checkpoint import snapshot
    from gansweep.core.config import TrainConfig
    from gansweep.core.models import ArchConfig
    from gansweep.core.progress import Progress
    from gansweep.core.train import final_summary, setup, train

    out = Path(a.out)
    cfg = TrainConfig(
        # Absolute: the checkpoint records its data, which a source-choice sweep reads back.
        data=str(Path(a.data).resolve()), out=str(out.with_name(out.stem + "_run")),
        arch=ArchConfig(a.arch, a.resolution, a.width, a.z_dim, a.d_norm, d_width=a.d_width,
                        mapping_layers=a.mapping_layers),
        loss=a.loss, lr=a.lr, batch_size=a.batch_size, iters=a.iters,
        eval_every=a.eval_every, fid_samples=a.fid_samples, fid_real=a.fid_real,
        metrics=_metrics(a.metrics), augment=a.augment, seed=a.seed, label="pretrain",
        label_smoothing=a.label_smoothing, label_noise=a.label_noise, r1_gamma=a.r1_gamma,
        path_length=a.path_length, inception_weights=a.inception_weights,
        cache_dir=a.cache_dir, device=a.device, lpips_weights=a.lpips_weights)
    state = setup(cfg, a.resume)
    with Progress(cfg.iters, "it", "pretrain", a.quiet, done=state.iteration) as progress:
        train(cfg, state=state, progress=progress)
    snapshot(state, out)
    print(json.dumps({**final_summary(state), "checkpoint": str(out)}))
    return 0


@command("transfer")
def cmd_transfer(a: argparse.Namespace) -> int:
    from gansweep.core.config import transfer_config
    from gansweep.core.progress import Progress
    from gansweep.core.train import final_summary, setup, train

    overrides = {k: v for k, v in dict(lr=a.lr, batch_size=a.batch_size, loss=a.loss,
                                       classifier_negatives=a.classifier_negatives).items()
                 if v is not None}
    cfg = transfer_config(
        a.source, str(Path(a.data).resolve()), a.out, d=a.d, g=a.g, baseline=a.baseline,
        modulation=a.modulation, conditional=a.conditional, freeze_d_depth=a.freeze_d_depth,
        g_init=a.g_init, d_init=a.d_init,
        expect_arch=a.arch, resolution=a.resolution, target_size=a.target_size,
        augment=a.augment, iters=a.iters, eval_every=a.eval_every,
        fid_samples=a.fid_samples, metrics=_metrics(a.metrics), seed=a.seed,
        bn_stats=a.bn_stats, inception_weights=a.inception_weights, cache_dir=a.cache_dir,
        lpips_weights=a.lpips_weights,
        device=a.device, eval_at_start=a.eval_at_start, lr_mult=_lr_mult(a.lr_mult),
        label_smoothing=a.label_smoothing, label_noise=a.label_noise, r1_gamma=a.r1_gamma,
        path_length=a.path_length, **overrides)
    state = setup(cfg, Path(a.out) / "checkpoint.pt" if a.resume else None)
    with Progress(cfg.iters, "it", cfg.label, a.quiet, done=state.iteration) as progress:
        train(cfg, state=state, progress=progress)
    print(json.dumps(final_summary(state)))
    return 0


@command("fid")
def cmd_fid(a: argparse.Namespace) -> int:
    from gansweep.core.data import load_folder
    from gansweep.core.metrics import (
        Evaluation,
        FeatureStats,
        compute_metrics,
        get_extractor,
        require_classifier,
        resolve_weights,
    )
    from gansweep.core.numerics import pick_device
    from gansweep.core.progress import Progress

    device = pick_device(a.device)
    extractor = get_extractor(resolve_weights(a.inception_weights), device)
    metrics = _metrics(a.metrics)
    if "is" in metrics:
        require_classifier(extractor)
    sets = [load_folder(d, a.resolution, a.alpha) for d in (a.dir_a, a.dir_b)]
    with Progress(sum(map(len, sets)), "img", "Inception", a.quiet) as progress:
        stats = [FeatureStats(*extractor.run(s.images, progress)) for s in sets]
    # DIR_A plays the real images, DIR_B the generated ones (IW's sign depends on it).
    evaluation = Evaluation(stats[0], stats[1], sets[0].images, sets[1].images, device=device)
    values = compute_metrics(evaluation, metrics)
    print(json.dumps({**values, "n_a": len(sets[0]), "n_b": len(sets[1])}))
    return 0


@command("import")
def cmd_import(a: argparse.Namespace) -> int:
    from gansweep.core.foreign import import_checkpoint

    print(json.dumps(import_checkpoint(a.format, a.g, a.d, a.out, a.trust_pickle)))
    return 0


@command("split")
def cmd_split(a: argparse.Namespace) -> int:
    from gansweep.core.data import split_folder

    parts = split_folder(a.folder, a.fraction, a.seed, a.out)
    print(json.dumps({"A": str(Path(a.out) / "A"), "n_a": len(parts["A"]),
                      "B": str(Path(a.out) / "B"), "n_b": len(parts["B"])}))
    return 0


@command("partitions")
def cmd_partitions(a: argparse.Namespace) -> int:
    from gansweep.core.treatments import enumerate_partitions

    if a.units < 1:
        raise GansweepError(f"--units: {a.units} must be at least 1")
    for net in ("D", "G") if a.net == "both" else (a.net,):
        parts = enumerate_partitions(net, a.units)
        for p in parts:
            print(f"{p}\t{' '.join(p.plan(a.modulation))}")
        print(f"# {len(parts)} {net} partitions for L = {a.units}")
    return 0


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _dry_run(spec) -> None:
    trials = spec.trials()
    columns = ["label", "source", "target", "target_size", "augment", "loss", "lr", "g_init",
               "d_init", "conditional", "seed"]
    rows = [{**t.to_dict(), "source": Path(t.source).name if t.source else "-",
             "target": Path(t.target).name} for t in trials]
    print(_table(rows, columns))
    n_pairs = sum(1 for t in trials if t.d is not None)
    n_plans = sum(1 for t in trials if t.g_plan is not None)
    plans = f" + {n_plans} per-unit plan trials" if n_plans else ""
    print(f"# {len(trials)} trials: {n_pairs} partition trials ({len(spec.pairs)} D x G pairs) "
          f"+ {len(trials) - n_pairs - n_plans} baseline trials "
          f"({', '.join(spec.baselines) or 'none'}){plans}, "
          f"over {len(spec.sources)} source(s), {len(spec.targets)} target(s) and the axes "
          + ", ".join(f"{k}={v}" for k, v in spec.axes.items() if len(v) > 1 or v[0] is not None))
    if spec.confirm is not None:
        from gansweep.sweep.spec import setting_key

        baselines = {setting_key(t.to_dict()) for t in trials if t.baseline is not None}
        settings = spec.confirm.top + len(baselines)
        print(f"# then the confirmation phase: {settings * len(spec.confirm.seeds)} trials "
              f"(the {spec.confirm.top} best settings of the search and every baseline, on "
              f"seeds {list(spec.confirm.seeds)}, each to the full budget)")
    for problem in spec.problems:
        print(f"warning: {problem} (a real launch refuses this)", file=sys.stderr)


@command("specs")
def cmd_specs(a: argparse.Namespace) -> int:
    from gansweep.sweep.spec import shipped_dir, shipped_specs

    specs = shipped_specs()
    width = max(map(len, specs))
    for name, description in specs.items():
        print(f"{name.ljust(width)}  {description}")
    print(f"# {len(specs)} shipped specs in {shipped_dir()}; 'gansweep launch NAME' runs one "
          f"(relative paths in it are relative to the current directory)")
    return 0


@command("launch")
def cmd_launch(a: argparse.Namespace) -> int:
    from gansweep.sweep.spec import load_spec

    spec = load_spec(a.spec)
    if a.name:
        spec.name = spec.raw["name"] = a.name
    if a.dry_run:
        _dry_run(spec)
        return 0
    from gansweep.sweep.runner import launch

    sweep_dir = launch(spec, a.storage, a.address)
    _finished(sweep_dir)
    return 0


def _finished(sweep_dir: Path) -> None:
    from gansweep.sweep.storage import Mirror

    mirror = Mirror.of_local(sweep_dir)
    print(f"sweep finished: {mirror.uri if mirror else sweep_dir}")
    print(status_of(sweep_dir))
    print(f"report: {_write_results(sweep_dir)}")


def _write_results(sweep_dir: Path, *args) -> str:
    """The Parquet tables and report (results.report.write_results); for a sweep on object
    storage, pushed to the bucket, and the report's place there is what is returned."""
    from gansweep.results.report import write_results
    from gansweep.sweep.storage import Mirror, join

    out, here = Path(write_results(sweep_dir, *args)).resolve(), sweep_dir.resolve()
    mirror = Mirror.of_local(sweep_dir)
    if mirror is None:
        return str(out)
    mirror.push(checkpoints=False)
    if not out.is_relative_to(here):
        return str(out)
    return f"{out} (in the bucket: {join(mirror.uri, out.relative_to(here).as_posix())})"


def status_of(sweep_dir: Path) -> str:
    from gansweep.sweep.state import status_text

    return status_text(sweep_dir)


@command("resume")
def cmd_resume(a: argparse.Namespace) -> int:
    from gansweep.sweep.runner import resume
    from gansweep.sweep.state import sweep_dir_of

    sweep_dir = resume(sweep_dir_of(a.sweep, a.storage), a.address, not a.skip_errored)
    _finished(sweep_dir)
    return 0


@command("status")
def cmd_status(a: argparse.Namespace) -> int:
    from gansweep.sweep.state import sweep_dir_of

    print(status_of(sweep_dir_of(a.sweep, a.storage)))
    return 0


@command("report")
def cmd_report(a: argparse.Namespace) -> int:
    from gansweep.sweep.state import sweep_dir_of

    out = _write_results(sweep_dir_of(a.sweep, a.storage), a.out, a.fid_threshold, a.quiet)
    print(f"report: {out}")
    return 0


@command("replay")
def cmd_replay(a: argparse.Namespace) -> int:
    from gansweep.sweep.replay import load_recording, parse_variant, replay_many
    from gansweep.sweep.state import sweep_dir_of

    source = Path(a.sweep) if Path(a.sweep).is_file() else sweep_dir_of(a.sweep, a.storage)
    recording = load_recording(source)
    if a.export:
        recording.save(a.export)
        print(f"recording of {recording.name} ({len(recording.trials)} trials) written to "
              f"{a.export}")
    variants = [parse_variant(v, recording.scheduler) for v in a.scheduler or ["today", "spec"]]
    try:
        concurrency = [int(c) for c in a.concurrency.split(",")]
    except ValueError:
        raise GansweepError(f"--concurrency {a.concurrency!r}: comma-separated integers, "
                            f"e.g. 1,4,16") from None
    print(f"replaying {recording.name}: {len(recording.trials)} trials x "
          f"{recording.max_iters} iterations, seeds {recording.seeds}, metric "
          f"{recording.metric}; {a.orders} random orders x concurrency {concurrency} per seed")
    for variant in variants:
        print(replay_many(recording, variant, a.orders, concurrency, a.seed).line(),
              flush=True)
    return 0


@command("demo")
def cmd_demo(a: argparse.Namespace) -> int:
    from gansweep.sweep.demo import run_demo

    run_demo(Path(a.out), a.inception_weights)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gansweep", description="Layer-wise transfer sweeps for pretrained GANs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train a source GAN; saves G and D with metadata")
    p.add_argument("--data", required=True, help="source image folder")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--arch", default="dcgan",
                   help="dcgan, dcgan-price, resnet, sngan or stylegan2")
    p.add_argument("--d-width", type=int, help="sngan: D's base channels (default --width)")
    p.add_argument("--mapping-layers", type=int, default=8,
                   help="stylegan2: depth of the mapping network (default %(default)s)")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--z-dim", type=int, default=100)
    p.add_argument("--d-norm", help="D's normalisation: batch, layer, none or spectral "
                                    "(default: the architecture's: spectral for sngan, none for "
                                    "stylegan2, else batch)")
    p.add_argument("--loss", default="wgan")
    p.add_argument("--lr", type=float)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--fid-real", type=int, default=500,
                   help="real reference images for FID (default %(default)s)")
    p.add_argument("--augment", default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint")
    _add_loss_options(p)
    _add_fid_options(p, 256)

    p = sub.add_parser("transfer", help="one transfer trial (the sweep's code path)")
    p.add_argument("--source", required=True, metavar="CKPT")
    p.add_argument("--data", required=True, help="target image folder")
    p.add_argument("--d", help="D partition, e.g. 'D(1,2,2)'")
    p.add_argument("--g", help="G partition, e.g. 'G(1,2,2)'")
    p.add_argument("--baseline", help="fine-tune, freeze, scale-shift, freeze-d or scratch")
    p.add_argument("--modulation", default="adafm", help="what j means: adafm or filter-shift")
    p.add_argument("--arch", help="refuse a source of another architecture")
    p.add_argument("--resolution", type=int, help="target resolution: below the source's, "
                   "transfer across resolutions (dcgan: G gets a new output unit, D a new "
                   "input unit)")
    p.add_argument("--freeze-d-depth", type=int)
    p.add_argument("--g-init", default="pretrained")
    p.add_argument("--d-init", default="pretrained")
    p.add_argument("--target-size", type=int)
    p.add_argument("--augment", default="none")
    p.add_argument("--conditional", choices=["projection", "ac"],
                   help="class-conditional transfer with this D head; DATA holds one "
                        "sub-folder per class")
    p.add_argument("--classifier-negatives", metavar="DIR",
                   help="'other' images of the classifier metric (default: the source's data)")
    p.add_argument("--loss", help="default: the source's pretraining loss")
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-mult", metavar="T=X,...",
                   help="learning-rate multiplier per treatment, e.g. finetune=0.1,reinit=1")
    _add_loss_options(p)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-at-start", action="store_true",
                   help="also evaluate iteration 0 (the source before any training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-stats", default="adapt", help="frozen units' norm statistics: "
                                                       "adapt or fixed")
    p.add_argument("--out", default="transfer_run", metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    _add_fid_options(p, 256)

    p = sub.add_parser("fid", help="FID (and KID) between two image folders")
    p.add_argument("dir_a")
    p.add_argument("dir_b")
    p.add_argument("--inception-weights", metavar="PATH")
    p.add_argument("--resolution", type=int, help="resize + centre-crop first (default: "
                                                  "native size, as pytorch-fid)")
    p.add_argument("--alpha", default="white", help="transparent pixels: 'white' (composite, "
                   "as training does) or 'drop' (pytorch-fid's convert('RGB'))")
    p.add_argument("--metrics", default="fid,kid")
    p.add_argument("--device", default="auto")
    _add_quiet(p)

    p = sub.add_parser("import", help="make a gansweep source from another codebase's "
                                      "checkpoint (G and D files, or one file with both)")
    p.add_argument("format", help="pytorch-examples-dcgan, mimicry or rosinality")
    p.add_argument("g", metavar="G_FILE", help="the generator's file (e.g. netG_epoch_24.pth), "
                                               "or the checkpoint holding both (rosinality)")
    p.add_argument("d", metavar="D_FILE", nargs="?", help="the discriminator's file")
    p.add_argument("--out", required=True, metavar="CKPT", help="gansweep checkpoint to write")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow files that need arbitrary Python objects unpickled (this runs "
                        "code from the file: only for files you trust)")

    p = sub.add_parser("split", help="split an image folder into disjoint parts A and B "
                                     "(symbolic links), e.g. to pretrain on A, transfer to B")
    p.add_argument("folder")
    p.add_argument("--fraction", type=float, default=0.5, help="A's share (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/A, DIR/B and "
                                                              "DIR/split.json")

    p = sub.add_parser("launch", help="run a sweep spec on Ray Tune")
    p.add_argument("spec", help="sweep spec: a YAML file, or the name of a shipped spec "
                                "('gansweep specs' lists them)")
    p.add_argument("--name", help="sweep name (default: the spec's)")
    p.add_argument("--storage", metavar="PATH_OR_URI", help="where sweeps live (default "
                   "$GANSWEEP_STORAGE or ./sweeps): a folder every node sees, or a bucket "
                   "(s3://bucket/prefix, gs://...)")
    p.add_argument("--address", help="join this Ray cluster (default: start a local Ray)")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")

    p = sub.add_parser("resume", help="continue a sweep after a failure")
    p.add_argument("sweep", metavar="NAME_OR_PATH")
    p.add_argument("--storage", metavar="PATH")
    p.add_argument("--address")
    p.add_argument("--skip-errored", action="store_true", help="do not retry errored trials")

    p = sub.add_parser("status", help="trials by state, best so far, compute spent (no Ray)")
    p.add_argument("sweep", metavar="NAME_OR_PATH")
    p.add_argument("--storage", metavar="PATH")

    p = sub.add_parser("report", help="Parquet tables and the HTML comparison report (no Ray)")
    p.add_argument("sweep", metavar="NAME_OR_PATH")
    p.add_argument("--storage", metavar="PATH")
    p.add_argument("--out", metavar="FILE", help="HTML file (default SWEEP/report.html)")
    p.add_argument("--fid-threshold", type=float, help="FID for 'iterations to threshold' "
                   "(default: the scratch baseline's best FID)")
    _add_quiet(p)

    p = sub.add_parser("replay", help="measure schedulers on a finished grid by replaying its "
                                      "recorded evaluations (seconds, no GPU)")
    p.add_argument("sweep", metavar="NAME_OR_PATH", help="a grid (every trial run to the end): "
                   "its sweep, or a file written by --export")
    p.add_argument("--storage", metavar="PATH")
    p.add_argument("--export", metavar="FILE", help="also write the grid's recorded "
                   "evaluations to FILE (gzipped JSON), to replay without the sweep directory")
    p.add_argument("--scheduler", action="append", metavar="SETTING",
                   help="'today' (0.1's ASHA: last FID, no noise margin), 'spec' (the sweep's "
                        "own), or NAME:key=value,... with grace, rf, score (last|mean|best), "
                        "window, noise (k), rung (0|1); repeat to compare (default: today "
                        "and spec)")
    p.add_argument("--orders", type=int, default=100, help="random trial orders per seed and "
                                                           "concurrency (default %(default)s)")
    p.add_argument("--concurrency", default="1,4,16", help="trials at a time (default "
                                                           "%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="of the random orders")

    p = sub.add_parser("demo", help="make data, pretrain a tiny source, run a small sweep")
    p.add_argument("--out", default="gansweep-demo", metavar="DIR")
    p.add_argument("--inception-weights", metavar="PATH")

    sub.add_parser("specs", help="list the shipped sweep specs with their purpose")

    p = sub.add_parser("partitions", help="list every D(i,j,k) / G(i,j,k) for L units")
    p.add_argument("--units", type=int, required=True, metavar="L")
    p.add_argument("--net", default="both", choices=("D", "G", "both"))
    p.add_argument("--modulation", default="adafm")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GansweepError as e:
        print(f"gansweep {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
