"""The ``gansweep`` command line: the command registry, the options commands share, and
``main``. The commands live beside their parsers in ``sweep.cli.train`` (single runs and data:
pretrain, transfer, fid, import, split, partitions) and ``sweep.cli.sweep`` (sweeps: specs,
launch, resume, status, report, replay, demo). Ray is imported only by the commands that
start it. Defaults are ``TrainConfig``'s and ``ArchConfig``'s (``default``)."""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gansweep.core.augment import AUGMENTS
from gansweep.core.config import MAX_SEED, TrainConfig
from gansweep.core.errors import GansweepError
from gansweep.core.metrics import METRICS

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
    p.add_argument("--inception-weights", metavar="PATH", type=existing("file"),
                   help="FID Inception weights (pytorch-fid layout); default "
                        "$GANSWEEP_INCEPTION_WEIGHTS, else pytorch-fid's download")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """What a training run (pretrain, transfer) shares: its budget, loss options and
    evaluation."""
    p.add_argument("--lr", type=float, help="default: the loss's")
    p.add_argument("--batch-size", type=int, default=default("batch_size"),
                   help="real (and generated) images per step")
    p.add_argument("--iters", type=int, default=default("iters"), help="generator steps")
    p.add_argument("--eval-every", type=int, default=default("eval_every"),
                   help="0: evaluate at the end only")
    p.add_argument("--fid-real", type=int, default=default("fid_real"),
                   help="real reference images for FID (default: all)")
    p.add_argument("--augment", default=default("augment"),
                   help=f"a preset or presets joined with '+': {', '.join(AUGMENTS)}")
    p.add_argument("--seed", type=integers(0, high=MAX_SEED), default=default("seed"),
                   help="of the run's data order, noise and initialisation")
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
                   help=f"comma-separated metrics ({', '.join(METRICS)}), or 'none' "
                        f"(default %(default)s)")
    p.add_argument("--lpips-weights", metavar="PATH", type=existing("file"),
                   help="LPIPS weights for intra_lpips (core/lpips.py): a full LPIPS "
                        "state dict, or torchvision's AlexNet file; default "
                        "$GANSWEEP_LPIPS_WEIGHTS, else the lpips package's linear weights "
                        "on the torch hub cache's AlexNet")
    p.add_argument("--cache-dir", type=output("dir"),
                   help="where real-data FID statistics are cached (default $GANSWEEP_CACHE or "
                        "~/.cache/gansweep)")
    p.add_argument("--device", type=device, default=default("device"),
                   help="auto (GPU if any), cpu or cuda[:N]")
    p.add_argument("--compile", action="store_true",
                   help="capture G's and D's step with torch.compile (CUDA graphs on a GPU; "
                        "not with wgan-gp, nor stylegan2's R1 or path length)")
    add_quiet(p)


def metric_names(value: str) -> list[str]:
    """``--metrics``: comma-separated registered metrics, or ``none``."""
    if value.strip() == "none":
        return []
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise GansweepError(f"--metrics: {value!r} names no metric; give e.g. fid,kid, or none")
    for name in names:
        if name not in METRICS:
            raise GansweepError(f"--metrics: unknown metric {name!r}; valid: "
                                f"{', '.join(METRICS)}, or none")
    return names


def run_options(a: argparse.Namespace) -> dict[str, Any]:
    """The shared TrainConfig fields ``add_run_options`` gave."""
    return {"batch_size": a.batch_size, "iters": a.iters, "eval_every": a.eval_every,
            "fid_real": a.fid_real, "n_critic": a.n_critic,
            "label_smoothing": a.label_smoothing, "label_noise": a.label_noise,
            "r1_gamma": a.r1_gamma, "path_length": a.path_length,
            "ema_kimg": a.ema_kimg or None, "inception_weights": a.inception_weights,
            "fid_samples": a.fid_samples, "metrics": metric_names(a.metrics),
            "lpips_weights": a.lpips_weights, "cache_dir": a.cache_dir,
            "compile": a.compile}


def integers(low: int, many: bool = False, high: int | None = None) -> Callable[[str], Any]:
    """An option's ``type``: an integer >= ``low`` (and <= ``high``; ``many``:
    comma-separated integers, a list); anything else is argparse's error naming the option
    and the range."""
    what = f"{'comma-separated integers' if many else 'an integer'} " + \
        (f">= {low}" if high is None else f"in [{low}, {high}]")

    def parse(text: str) -> Any:
        try:
            values = [int(v) for v in text.split(",")] if many else [int(text)]
        except ValueError:
            values = []
        if not values or any(v < low or (high is not None and v > high) for v in values):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return values if many else values[0]
    return parse


def number(low: float, above: bool = True) -> Callable[[str], float]:
    """An option's ``type``: a finite number > ``low`` (``above=False``: >= ``low``)."""
    what = f"a number {'>' if above else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


def text(value: str) -> str:
    """An option's ``type``: any text but the empty one (a path, a name, an address)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty value")
    return value


def existing(kind: str) -> Callable[[str], str]:
    """An option's ``type``: a ``file`` or a ``dir`` that exists (an input), checked before
    the command reads or writes anything."""
    def parse(value: str) -> str:
        path, want = Path(text(value)).expanduser(), "folder" if kind == "dir" else "file"
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{value}: no such {want}")
        if path.is_dir() != (kind == "dir"):
            raise argparse.ArgumentTypeError(f"{value}: not a {want}")
        return value
    return parse


def output(kind: str, suffixes: tuple[str, ...] = ()) -> Callable[[str], str]:
    """An option's ``type``: a ``file`` or a ``dir`` the command will write (an output),
    checked before it reads or computes anything: not the other kind where it exists, in a
    folder that can be written (the missing folders are made), with one of ``suffixes``."""
    def parse(value: str) -> str:
        path = Path(text(value)).expanduser()
        if kind == "file" and (path.name in ("", ".", "..") or path.is_dir()):
            raise argparse.ArgumentTypeError(f"{value}: is a folder, not a file to write")
        if kind == "dir" and path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{value}: is a file, not a folder to write")
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{value}: not a {' or '.join(suffixes)} file")
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{value}: cannot write in {parent}")
        return value
    return parse


def device(value: str) -> str:
    """An option's ``type``: auto, or a device torch knows (cpu, cuda, cuda:1, ...) that
    this machine has."""
    import torch

    if value == "auto":
        return value
    try:
        dev = torch.device(value)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{value!r} is not auto, cpu or cuda[:N]") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise argparse.ArgumentTypeError(
                f"{value!r}: this machine has {count or 'no'} CUDA GPU{'' if count == 1 else 's'}"
                f" (auto uses one where there is one)")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{value!r} is not auto, cpu or cuda[:N]")
    return value


class UsageError(Exception):
    """argparse refused the command line (the message: its one line)."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, its errors one line like every other refusal (argparse prints the
    usage too): ``gansweep CMD: error: ...``, exit 2."""

    def error(self, message: str):
        """argparse's hook for a refused command line."""
        raise UsageError(f"{self.prog}: error: {' '.join(message.split())}")

    def parse_args(self, args=None, namespace=None):
        """argparse's, an unrecognised argument reported by its command's parser."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(parsed, "command", None)
            raise UsageError(f"{self.prog}{' ' + command if command else ''}: error: "
                             f"unrecognized arguments: {' '.join(extra)}")
        return parsed


class HelpFormatter(argparse.HelpFormatter):
    """Help pages that show every option's default where it has one (and its help does not
    already say it); argparse shows choices in the option's {a,b,...}."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" not in text and "default" not in text and action.option_strings \
                and action.default is not None and action.default is not False \
                and action.default != argparse.SUPPRESS:
            text += (" " if text else "") + "(default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gansweep",
                    description="Layer-wise transfer sweeps for pretrained GANs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for c in COMMANDS.values():
        p = sub.add_parser(c.name, help=c.help, description=f"gansweep {c.name}: {c.help}.",
                           formatter_class=HelpFormatter)
        c.arguments(p)
        for action in p._actions:  # argparse prints no help line, so no default, without one
            if action.help is None and action.default is not None \
                    and action.default is not False and action.default != argparse.SUPPRESS:
                action.help = ""
                action.help = HelpFormatter("")._get_help_string(action)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command].run(args)
    except GansweepError as e:
        print(f"gansweep {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written, met while running
        where = f"{e.filename}: " if e.filename else ""
        print(f"gansweep {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


# The commands register themselves; their modules build on this one.
import gansweep.sweep.cli.sweep  # noqa: E402,F401
import gansweep.sweep.cli.train  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
