"""The ``gansweep`` command line: the command registry, the options commands share, and
``main``. The commands live beside their parsers in ``sweep.cli_run`` (single runs and data:
pretrain, transfer, fid, import, split, partitions) and ``sweep.cli_sweep`` (sweeps: specs,
launch, resume, status, report, replay, demo). Ray is imported only by the commands that
start it. Defaults are ``TrainConfig``'s and ``ArchConfig``'s (``default``)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gansweep.core.config import TrainConfig
from gansweep.core.errors import GansweepError

default = TrainConfig.default


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register a command's handler with its help line and its parser's arguments."""
    def deco(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, arguments, run)
        return run
    return deco


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress output (a bar on a "
                   "terminal, else one line per evaluation, on stderr)")


def add_inception(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inception-weights", metavar="PATH",
                   help="FID Inception weights (pytorch-fid layout); default "
                        "$GANSWEEP_INCEPTION_WEIGHTS, else pytorch-fid's download")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """What a training run (pretrain, transfer) shares: its budget, loss options and
    evaluation."""
    p.add_argument("--lr", type=float, help="default: the loss's")
    p.add_argument("--batch-size", type=int, default=default("batch_size"))
    p.add_argument("--iters", type=int, default=default("iters"))
    p.add_argument("--eval-every", type=int, default=default("eval_every"),
                   help="0: evaluate at the end only")
    p.add_argument("--fid-real", type=int, default=default("fid_real"),
                   help="real reference images for FID (default: all)")
    p.add_argument("--augment", default=default("augment"))
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--n-critic", type=int, help="critic steps per G step (default: the loss's)")
    p.add_argument("--label-smoothing", type=float, default=default("label_smoothing"),
                   help="loss bce: D's targets drawn from 1 +- S and 0 +- S (Price: 0.2)")
    p.add_argument("--label-noise", type=float, default=default("label_noise"),
                   help="loss bce: fraction of D's targets swapped")
    p.add_argument("--r1-gamma", type=float,
                   help="loss stylegan2: weight of the lazy R1 penalty (default 10)")
    p.add_argument("--path-length", type=float, default=default("path_length"),
                   help="loss stylegan2, arch stylegan2: weight of the lazy path-length "
                        "penalty (StyleGAN2's 2; default 0: off)")
    p.add_argument("--ema-kimg", type=float, default=default("ema_kimg"),
                   help="half-life of the evaluated EMA generator in thousands of images "
                        "(default %(default)s); 0: evaluate G itself")
    add_inception(p)
    p.add_argument("--fid-samples", type=int, default=default("fid_samples"),
                   help="generated images per FID/KID evaluation (default %(default)s)")
    p.add_argument("--metrics", default=",".join(default("metrics")),
                   help="comma-separated metrics, or 'none' (default %(default)s)")
    p.add_argument("--lpips-weights", metavar="PATH",
                   help="LPIPS weights for intra_lpips (core/lpips.py): a full LPIPS "
                        "state dict, or torchvision's AlexNet file; default "
                        "$GANSWEEP_LPIPS_WEIGHTS, else the lpips package's linear weights "
                        "on the torch hub cache's AlexNet")
    p.add_argument("--cache-dir", help="where real-data FID statistics are cached "
                                       "(default $GANSWEEP_CACHE or ~/.cache/gansweep)")
    p.add_argument("--device", default=default("device"), help="auto (GPU if any), cpu or "
                                                               "cuda[:N]")
    add_quiet(p)


def metric_names(text: str) -> list[str]:
    return [] if text.strip() == "none" else [m.strip() for m in text.split(",") if m.strip()]


def run_options(a: argparse.Namespace) -> dict[str, Any]:
    """The shared TrainConfig fields ``add_run_options`` gave."""
    return {"batch_size": a.batch_size, "iters": a.iters, "eval_every": a.eval_every,
            "fid_real": a.fid_real, "n_critic": a.n_critic,
            "label_smoothing": a.label_smoothing, "label_noise": a.label_noise,
            "r1_gamma": a.r1_gamma, "path_length": a.path_length,
            "ema_kimg": a.ema_kimg or None, "inception_weights": a.inception_weights,
            "fid_samples": a.fid_samples, "metrics": metric_names(a.metrics),
            "lpips_weights": a.lpips_weights, "cache_dir": a.cache_dir}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gansweep", description="Layer-wise transfer sweeps for pretrained GANs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for c in COMMANDS.values():
        c.arguments(sub.add_parser(c.name, help=c.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except GansweepError as e:
        print(f"gansweep {args.command}: error: {e}", file=sys.stderr)
        return 2


# The commands register themselves; their modules build on this one.
from gansweep.sweep import cli_run, cli_sweep  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
