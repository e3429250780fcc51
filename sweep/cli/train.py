"""Commands for single runs and data: pretrain, transfer, fid, import, split, partitions.
Each command's parser is beside its handler."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gansweep.core.config import MAX_SEED
from gansweep.core.errors import GansweepError
from gansweep.core.foreign import IMPORTERS
from gansweep.core.losses import LOSSES
from gansweep.core.models import ARCHITECTURES, MAX_WIDTH, ArchConfig
from gansweep.core.treatments import modulations
from gansweep.core.trial import INITS
from gansweep.sweep.cli.main import (
    add_inception,
    add_quiet,
    add_run_options,
    command,
    device,
    existing,
    integers,
    metric_names,
    output,
    run_options,
)

# Bounds of what a command can be asked to make, past which it would only exhaust memory.
MAX_UNITS = 32  # partitions --units: more than any network has (the list grows as L^2)
MAX_SAMPLES = 4096  # sample --n
MAX_FID_RESOLUTION = 1024  # fid --resolution: the largest side any architecture builds
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=existing("dir"), help="source image folder")
    p.add_argument("--out", required=True, type=output("file"), metavar="CKPT",
                   help="checkpoint file to write")
    p.add_argument("--arch", default=ArchConfig.name, choices=ARCHITECTURES.names(),
                   help="the architecture")
    p.add_argument("--resolution", type=int, default=ArchConfig.resolution,
                   help="image side in pixels (each architecture's: see the README)")
    p.add_argument("--width", type=int, default=ArchConfig.width,
                   help=f"base channels, at most {MAX_WIDTH}")
    p.add_argument("--z-dim", type=int, default=ArchConfig.z_dim, help="latent size")
    p.add_argument("--d-norm", help="D's normalisation: batch, layer, none or spectral "
                                    "(default: the architecture's: spectral for sngan, none for "
                                    "stylegan2, else batch)")
    p.add_argument("--d-width", type=int, help="sngan: D's base channels (default --width)")
    p.add_argument("--mapping-layers", type=int, default=ArchConfig.mapping_layers,
                   help="stylegan2: depth of the mapping network (default %(default)s)")
    p.add_argument("--loss", default="wgan", choices=LOSSES.names(), help="the GAN loss")
    p.add_argument("--resume", metavar="CKPT", type=existing("file"),
                   help="continue from this checkpoint")
    add_run_options(p)


@command("pretrain", "train a source GAN; saves G and D with metadata", _pretrain_args)
def cmd_pretrain(a: argparse.Namespace) -> int:
    from gansweep.core.checkpoint import snapshot
    from gansweep.core.progress import Progress
    from gansweep.core.train import final_summary, setup, train
    from gansweep.core.trial import Trial, TrialTemplate, trial_config

    out = Path(a.out)
    arch = ArchConfig(a.arch, a.resolution, a.width, a.z_dim, a.d_norm, d_width=a.d_width,
                      mapping_layers=a.mapping_layers)
    # The data's path absolute: the checkpoint records it, and a sweep reads it back.
    trial = Trial(label="pretrain", source=None, target=str(Path(a.data).resolve()),
                  loss=a.loss, lr=a.lr, augment=a.augment, seed=a.seed)
    cfg = trial_config(TrialTemplate(run_options(a), arch=arch), trial,
                       str(out.with_name(out.stem + "_run")), a.device)
    state = setup(cfg, a.resume)
    with Progress(cfg.iters, "it", "pretrain", a.quiet, done=state.iteration) as progress:
        train(cfg, state=state, progress=progress)
    snapshot(state, out)
    print(json.dumps({**final_summary(state), "checkpoint": str(out)}))
    return 0


def _transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="CKPT", type=existing("file"),
                   help="the pretrained checkpoint (pretrain's or import's)")
    p.add_argument("--data", required=True, type=existing("dir"), help="target image folder")
    p.add_argument("--d", help="D partition, e.g. 'D(1,2,2)'")
    p.add_argument("--g", help="G partition, e.g. 'G(1,2,2)'")
    p.add_argument("--baseline", help="fine-tune, freeze, scale-shift, freeze-d or scratch")
    p.add_argument("--modulation", default="adafm", help="what j means: adafm or filter-shift")
    p.add_argument("--arch", help="refuse a source of another architecture")
    p.add_argument("--resolution", type=integers(1), help="target resolution: below the source's, "
                   "transfer across resolutions (dcgan: G gets a new output unit, D a new "
                   "input unit)")
    p.add_argument("--freeze-d-depth", type=int, help="--baseline freeze-d: D's frozen units "
                   "(default L-2)")
    p.add_argument("--g-init", default="pretrained", choices=INITS,
                   help="G's start (scratch: fully fine-tuned from random weights)")
    p.add_argument("--d-init", default="pretrained", choices=INITS, help="D's start")
    p.add_argument("--target-size", type=int, help="train on a subset of this many images "
                   "(default: all)")
    p.add_argument("--conditional", choices=["projection", "ac"],
                   help="class-conditional transfer with this D head; DATA holds one "
                        "sub-folder per class")
    p.add_argument("--classifier-negatives", metavar="DIR", type=existing("dir"),
                   help="'other' images of the classifier metric (default: the source's data)")
    p.add_argument("--loss", choices=LOSSES.names(),
                   help="default: the source's pretraining loss")
    p.add_argument("--lr-mult", metavar="T=X,...",
                   help="learning-rate multiplier per treatment, e.g. finetune=0.1,reinit=1")
    p.add_argument("--eval-at-start", action="store_true",
                   help="also evaluate iteration 0 (the source before any training)")
    p.add_argument("--bn-stats", default="adapt", help="frozen units' norm statistics: "
                                                       "adapt or fixed")
    p.add_argument("--out", default="transfer_run", type=output("dir"), metavar="DIR",
                   help="the run's folder: checkpoint, samples, metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    add_run_options(p)


def _lr_mult(text: str | None) -> dict[str, float]:
    """'finetune=0.1,reinit=1' -> {'finetune': 0.1, 'reinit': 1.0}."""
    out: dict[str, float] = {}
    if text is not None and not text.replace(",", "").strip():
        raise GansweepError(f"--lr-mult: {text!r} names no treatment; give e.g. finetune=0.1")
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


@command("transfer", "one transfer trial (the sweep's code path)", _transfer_args)
def cmd_transfer(a: argparse.Namespace) -> int:
    from gansweep.core.progress import Progress
    from gansweep.core.train import final_summary, setup, train
    from gansweep.core.trial import transfer_config

    if a.freeze_d_depth is not None and a.baseline != "freeze-d":
        raise GansweepError("--freeze-d-depth: only with --baseline freeze-d")
    cfg = transfer_config(
        a.source, str(Path(a.data).resolve()), a.out, d=a.d, g=a.g, baseline=a.baseline,
        expect_arch=a.arch, resolution=a.resolution, device=a.device,
        modulation=a.modulation, conditional=a.conditional, freeze_d_depth=a.freeze_d_depth,
        g_init=a.g_init, d_init=a.d_init, target_size=a.target_size, augment=a.augment,
        loss=a.loss, lr=a.lr, seed=a.seed, classifier_negatives=a.classifier_negatives,
        bn_stats=a.bn_stats, eval_at_start=a.eval_at_start, lr_mult=_lr_mult(a.lr_mult),
        **run_options(a))
    if a.resume and not (Path(a.out) / "checkpoint.pt").is_file():
        raise GansweepError(f"--resume: {Path(a.out) / 'checkpoint.pt'} does not exist (--out "
                            f"names the run to continue)")
    state = setup(cfg, Path(a.out) / "checkpoint.pt" if a.resume else None)
    with Progress(cfg.iters, "it", cfg.label, a.quiet, done=state.iteration) as progress:
        train(cfg, state=state, progress=progress)
    print(json.dumps(final_summary(state)))
    return 0


def _fid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir_a", type=existing("dir"), help="the real images (IW's sign: A real)")
    p.add_argument("dir_b", type=existing("dir"), help="the generated images")
    add_inception(p)
    p.add_argument("--resolution", type=integers(1, high=MAX_FID_RESOLUTION),
                   help="resize + centre-crop first (default: native size, as pytorch-fid)")
    p.add_argument("--alpha", default="white", help="transparent pixels: 'white' (composite, "
                   "as training does) or 'drop' (pytorch-fid's convert('RGB'))")
    p.add_argument("--metrics", default="fid,kid", help="comma-separated: fid, kid, is")
    p.add_argument("--device", type=device, default="auto",
                   help="auto (GPU if any), cpu or cuda[:N]")
    add_quiet(p)


@command("fid", "FID (and KID) between two image folders", _fid_args)
def cmd_fid(a: argparse.Namespace) -> int:
    from gansweep.core.data import load_folder
    from gansweep.core.features import (
        FeatureStats,
        get_extractor,
        require_classifier,
        resolve_weights,
    )
    from gansweep.core.metrics import Evaluation, compute_metrics
    from gansweep.core.numerics import pick_device
    from gansweep.core.progress import Progress

    device = pick_device(a.device)
    extractor = get_extractor(resolve_weights(a.inception_weights), device)
    metrics = metric_names(a.metrics)
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


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=IMPORTERS.names(), help="whose checkpoint it is")
    p.add_argument("g", metavar="G_FILE", type=existing("file"),
                   help="the generator's file (e.g. netG_epoch_24.pth), or the file holding "
                        "both (rosinality, stylegan2-ada)")
    p.add_argument("d", metavar="D_FILE", nargs="?", type=existing("file"),
                   help="the discriminator's file")
    p.add_argument("--out", required=True, type=output("file"), metavar="CKPT",
                   help="gansweep checkpoint to write")
    p.add_argument("--generator", help="stylegan2-ada: the network pickle's generator that "
                                       "becomes G: G_ema (default) or G")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow files that need arbitrary Python objects unpickled (this runs "
                        "code from the file: only for files you trust; stylegan2-ada pickles "
                        "never need it)")


@command("import", "make a gansweep source from another codebase's checkpoint (G and D "
                   "files, or one file with both)", _import_args)
def cmd_import(a: argparse.Namespace) -> int:
    from gansweep.core.foreign import import_checkpoint

    print(json.dumps(import_checkpoint(a.format, a.g, a.d, a.out, a.trust_pickle,
                                       a.generator)))
    return 0


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=existing("dir"), help="the image folder to split")
    p.add_argument("--fraction", type=float, default=0.5, help="A's share, in (0, 1)")
    p.add_argument("--seed", type=integers(0, high=MAX_SEED), default=0,
                   help="of the permutation")
    p.add_argument("--out", required=True, type=output("dir"), metavar="DIR",
                   help="writes DIR/A, DIR/B and DIR/split.json (outside FOLDER)")


@command("split", "split an image folder into disjoint parts A and B (symbolic links), e.g. "
                  "to pretrain on A, transfer to B", _split_args)
def cmd_split(a: argparse.Namespace) -> int:
    from gansweep.core.data import split_folder

    parts = split_folder(a.folder, a.fraction, a.seed, a.out)
    print(json.dumps({"A": str(Path(a.out) / "A"), "n_a": len(parts["A"]),
                      "B": str(Path(a.out) / "B"), "n_b": len(parts["B"])}))
    return 0


def _partitions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--units", type=integers(1, high=MAX_UNITS), required=True, metavar="L",
                   help="the network's transfer units")
    p.add_argument("--net", default="both", choices=("D", "G", "both"), help="whose")
    p.add_argument("--modulation", default="adafm", choices=modulations(),
                   help="what j means")


@command("partitions", "list every D(i,j,k) / G(i,j,k) for L units", _partitions_args)
def cmd_partitions(a: argparse.Namespace) -> int:
    from gansweep.core.treatments import enumerate_partitions

    for net in ("D", "G") if a.net == "both" else (a.net,):
        parts = enumerate_partitions(net, a.units)
        for p in parts:
            print(f"{p}\t{' '.join(p.plan(a.modulation))}")
        print(f"# {len(parts)} {net} partitions for L = {a.units}")
    return 0


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", type=existing("file"),
                   help="a checkpoint gansweep wrote: a trial's "
                   "('gansweep best' names the winner's) or pretrain's; a trial's reads its "
                   "source and target again, where they were")
    p.add_argument("--out", default="samples.png", type=output("file", IMAGE_SUFFIXES),
                   metavar="PNG", help="the grid to write (.png or .jpg)")
    p.add_argument("--n", type=integers(1, high=MAX_SAMPLES), default=64,
                   help="images (a square-ish grid)")
    p.add_argument("--seed", type=integers(0, high=MAX_SEED), default=0, help="of the noise")
    p.add_argument("--device", type=device, default="auto",
                   help="auto (GPU if any), cpu or cuda[:N]")


@command("sample", "images from a checkpoint's generator (its EMA one where it has one), as "
                   "one PNG grid", _sample_args)
def cmd_sample(a: argparse.Namespace) -> int:
    import dataclasses
    import math

    from torchvision.utils import save_image

    from gansweep.core.checkpoint import load_checkpoint, require_run
    from gansweep.core.config import TrainConfig
    from gansweep.core.evaluate import balanced_labels, generate
    from gansweep.core.train import setup

    ckpt = load_checkpoint(a.checkpoint)
    require_run(ckpt, a.checkpoint)
    # No metrics: sampling needs no real-data statistics.
    cfg = dataclasses.replace(TrainConfig.from_dict(ckpt["config"]), metrics=[],
                              device=a.device, out=str(Path(a.checkpoint).parent))
    state = setup(cfg, resume=a.checkpoint)
    images = generate(state, a.n, a.seed, balanced_labels(state, a.n))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float() / 255, out, nrow=math.ceil(math.sqrt(a.n)))
    print(json.dumps({"out": str(out.resolve()), "images": a.n, "iteration": state.iteration,
                      "generator": "G_ema" if state.ema is not None else "G"}))
    return 0
