"""The GPU check (issue 37), one command: the CUDA-only tests; gansweep's training step vs
the plain PyTorch loop (bench_throughput's) for dcgan and stylegan2; 1/4/8 processes of the
step packed on one GPU (what ``gpu: 1/N`` gives); a whole transfer trial with FID and KID;
Inception's feature throughput in float32, TF32 and bf16 at batch 50/200/500, each with its
FID's relative difference to float32's (rejected above 0.1 %); and the step captured by
``compile: true`` against the plain loop (dcgan). Prints one table; ``--out`` writes it as
JSON.

Needs only torch, torchvision, numpy, scipy and pytorch-fid (no Ray, no plotly: a GPU
machine may have neither) and runs from a source checkout. ``--smoke`` runs every part at
tiny sizes in seconds (tests/test_bench_gpu.py runs it on the CPU); without a GPU every
figure is "pending a GPU" and the CPU's smoke figure is shown beside it, never instead.

    python -m benchmarks.bench_gpu [--smoke] [--out PATH] [--device auto|cpu|cuda[:N]]
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmarks._common import ROOT, WEIGHTS, Timer, interleaved, machine

try:
    import gansweep.core  # noqa: F401
except ImportError:  # a checkout never installed: its top-level folders are the subpackages
    import gansweep

    gansweep.__path__.append(str(ROOT))

from benchmarks.bench_throughput import SETUPS  # noqa: E402
from gansweep.core.config import TrainConfig  # noqa: E402
from gansweep.core.data import load_folder  # noqa: E402
from gansweep.core.features import FeatureStats, InceptionFeatures  # noqa: E402
from gansweep.core.metrics import fid  # noqa: E402
from gansweep.core.numerics import pick_device  # noqa: E402
from gansweep.core.synthetic import make_domain  # noqa: E402
from gansweep.core.train import read_losses, setup, train, train_step  # noqa: E402
from gansweep.core.trial import transfer_config  # noqa: E402

PENDING = "pending a GPU"
FID_TOLERANCE = 1e-3  # a faster precision is kept only if FID moves by at most 0.1 %
PRECISIONS = ("float32", "tf32", "bf16")


@dataclass(frozen=True)
class Sizes:
    width: int  # of the step-vs-plain and packing models (bench_throughput's SETUPS)
    batch: int
    iters: int  # generator iterations per timing
    repeats: int
    packing: dict[str, tuple[int, ...]]  # arch -> process counts
    pack_seconds: float
    trial_width: int
    trial_images: int  # of the source's and the target's domains
    source_iters: int
    trial_iters: int
    fid_samples: int
    fid_images: int  # per real set
    fid_batches: tuple[int, ...]
    # Also the step captured by torch.compile (not in the smoke run: a cold compile takes a
    # minute on a CPU; tests/test_compile.py checks its numerics)
    compile: bool = False


FULL = Sizes(32, 64, 20, 5, {"dcgan": (1, 4, 8), "stylegan2": (1, 4)}, 8.0, 64, 2000,
             200, 1000, 2000, 2000, (50, 200, 500), compile=True)
# Inception dominates on a CPU (about 1 image/s on two busy cores): a handful of images.
SMOKE = Sizes(8, 4, 2, 1, {"dcgan": (1, 2)}, 0.5, 8, 4, 2, 2, 4, 2, (2,))


@dataclass
class Row:
    what: str
    value: float | None = None  # None: not measured here (``note`` says why)
    unit: str = ""
    note: str = ""
    cpu_smoke: float | None = None  # the smoke run's CPU figure, when the GPU's is pending


def _state(name: str, width: int, batch: int, folder: Path, out: Path, device: torch.device,
           compile_: bool = False):
    make_arch, loss, _, ema_kimg, _ = SETUPS[name]
    return setup(TrainConfig(data=str(folder), out=str(out), arch=make_arch(width), loss=loss,
                             batch_size=batch, iters=10**6, metrics=[], device=str(device),
                             ema_kimg=ema_kimg, ema_rampup=None, compile=compile_))


def cuda_tests(device: torch.device) -> list[Row]:
    """The tests that skip without a GPU, run with pytest (those needing Ray dropped when
    it is not installed)."""
    what = "the CUDA-only tests"
    if device.type != "cuda":
        return [Row(what, note=PENDING)]
    missing = [m for m in ("pytest", "yaml") if importlib.util.find_spec(m) is None]
    if missing:  # the suite's fixtures (tests/helpers.py) need them
        return [Row(what, note=f"not run: the tests need {', '.join(missing)} (the dev extras)")]
    ids, dropped = [], []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text()
        names = re.findall(r"skipif\(not torch\.cuda\.is_available\(\).*\n(?:@.*\n)*"
                           r"def (test_\w+)", text)
        needs_ray = "import ray" in text or "gansweep.sweep" in text
        if names and needs_ray and importlib.util.find_spec("ray") is None:
            dropped += names
            continue
        ids += [f"tests/{path.name}::{n}" for n in names]
    if not ids:  # pytest without ids would run the whole suite
        return [Row(what, note=f"none found; not run (no Ray): {', '.join(dropped) or '-'}")]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = (run.stdout.strip().splitlines() or ["no output"])[-1]
    passed = re.search(r"(\d+) passed", summary)
    note = summary + (f"; not run (no Ray): {', '.join(dropped)}" if dropped else "")
    return [Row(what, float(passed.group(1)) if passed else 0.0, f"of {len(ids)} passed",
                note)]


def step_vs_plain(name: str, s: Sizes, folder: Path, tmp: Path,
                  device: torch.device) -> list[Row]:
    """Real images/s through D of gansweep's step and of the plain loop, interleaved."""
    _, loss, n_critic, _, plain_loop = SETUPS[name]
    state = _state(name, s.width, s.batch, folder, tmp / f"step-{name}", device)
    plain = plain_loop(state.data, state.cfg.arch, s.batch)

    def timed(step) -> float:
        with Timer() as t:  # waits for the device at both ends
            for _ in range(s.iters):
                step()
        return s.iters * n_critic * s.batch / t.seconds

    steps = {"gansweep": lambda: timed(lambda: train_step(state)), "plain": lambda: timed(plain)}
    if s.compile and loss != "stylegan2":  # stylegan2's R1 cannot be captured
        captured = _state(name, s.width, s.batch, folder, tmp / f"compiled-{name}", device, True)
        steps["compiled"] = lambda: timed(lambda: train_step(captured))
    for fn in steps.values():
        fn()  # warm-up (cuDNN's autotuning)
    runs = interleaved(steps, s.repeats)
    median = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
    what = f"{name} 32 px width {s.width} batch {s.batch} ({loss})"
    rows = [Row(f"{what}: gansweep step", median["gansweep"], "images/s"),
            Row(f"{what}: plain loop", median["plain"], "images/s"),
            Row(f"{what}: gansweep / plain", median["gansweep"] / median["plain"], "x",
                "goal >= 0.95")]
    if "compiled" in median:
        rows.append(Row(f"{what}: compile: true (reduce-overhead) / plain",
                        median["compiled"] / median["plain"], "x"))
    return rows


def _pack_worker(name: str, width: int, batch: int, seconds: float, folder: str, out: str,
                 device: str, barrier, queue) -> None:
    if device == "cpu":
        torch.set_num_threads(1)
    state = _state(name, width, batch, Path(folder), Path(out), torch.device(device))
    n_critic = SETUPS[name][2]
    for _ in range(3):
        train_step(state)
    read_losses(state)
    if state.device.type == "cuda":
        torch.cuda.synchronize(state.device)
    barrier.wait(timeout=600)
    n = 0
    with Timer() as t:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            train_step(state)
            n += 1
        read_losses(state)
    queue.put(n * n_critic * batch / t.seconds)


def _result(queue, procs: list) -> float:
    """The next worker's images/s; raises if a worker died without one."""
    while True:
        try:
            return queue.get(timeout=1)
        except Exception:  # queue.Empty: is everyone still alive?
            if any(p.exitcode not in (None, 0) for p in procs):
                codes = [p.exitcode for p in procs]
                raise RuntimeError(f"a packing worker failed (exit codes {codes}); see its "
                                   f"traceback above") from None


def packing(name: str, s: Sizes, folder: Path, tmp: Path, device: torch.device) -> list[Row]:
    """Total images/s of k processes each training its own step on the one device."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    # By its module's name: run as __main__, the worker would not be found by the children
    worker = importlib.import_module("benchmarks.bench_gpu")._pack_worker
    rows, one = [], None
    for k in s.packing[name]:
        barrier, queue = ctx.Barrier(k), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(
            name, s.width, s.batch, s.pack_seconds, str(folder), str(tmp / f"pack-{name}-{i}"),
            str(device), barrier, queue)) for i in range(k)]
        for p in procs:
            p.start()
        try:
            total = sum(_result(queue, procs) for _ in procs)
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
        one = one or total
        rows.append(Row(f"{name} width {s.width} batch {s.batch}: {k} process(es) on one "
                        f"device", total, "images/s", f"{total / one:.2f}x one"))
    return rows


def whole_trial(s: Sizes, tmp: Path, device: torch.device, weights: str) -> list[Row]:
    """A fine-tuning transfer from a synthetic source: EMA, FID and KID evaluated twice."""
    arch = SETUPS["dcgan"][0](s.trial_width)
    blobs = make_domain(tmp / "blobs", "blobs", s.trial_images, 32, seed=0)
    faces = make_domain(tmp / "faces", "faces", s.trial_images, 32, seed=1)
    with Timer() as pre:
        source = tmp / "source.pt"
        from gansweep.core.checkpoint import snapshot
        snapshot(train(TrainConfig(data=str(blobs), out=str(tmp / "src"), arch=arch, metrics=[],
                                   iters=s.source_iters, batch_size=min(64, s.trial_images),
                                   device=str(device))), source)
    cfg = transfer_config(str(source), str(faces), str(tmp / "trial"), baseline="fine-tune",
                          iters=s.trial_iters, eval_every=max(1, s.trial_iters // 2),
                          batch_size=min(64, s.trial_images), metrics=["fid", "kid"],
                          fid_samples=s.fid_samples,
                          inception_weights=weights, cache_dir=str(tmp / "cache"),
                          device=str(device))
    with Timer() as t:
        state = train(cfg)
    what = (f"whole transfer trial: dcgan 32 px width {s.trial_width}, {s.trial_iters} "
            f"iterations, EMA, FID+KID on {s.fid_samples} samples twice")
    return [Row(what, t.seconds, "s", f"FID {state.history[-1]['fid']:.3g}"),
            Row(f"source pretraining, {s.source_iters} iterations", pre.seconds, "s")]


def _features(model: InceptionFeatures, images: torch.Tensor, batch: int,
              precision: str) -> tuple[FeatureStats, float]:
    """Pool3 features in ``precision`` and the images/s (copies to the device and back
    included)."""
    backends = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = [b.allow_tf32 for b in backends]
    for b in backends:
        b.allow_tf32 = precision == "tf32"
    try:
        with torch.inference_mode(), Timer() as t:
            out = []
            for part in images.split(batch):
                x = part.to(model.device, non_blocking=True).float().div_(255.0)
                with torch.autocast(model.device.type, torch.bfloat16,
                                    enabled=precision == "bf16"):
                    out.append(model.model(x)[0].float())
            features = torch.cat(out).cpu().numpy()
    finally:
        for b, value in zip(backends, saved):
            b.allow_tf32 = value
    return FeatureStats(features), len(images) / t.seconds


def fid_precision(s: Sizes, tmp: Path, device: torch.device, weights: str) -> list[Row]:
    """Feature throughput per precision and batch, and FID(faces, blobs)'s relative
    difference to float32's at the first batch size (two real image sets)."""
    sets = [load_folder(make_domain(tmp / f"fid-{style}", style, s.fid_images, 32, seed=3),
                        32).images for style in ("faces", "blobs")]
    model = InceptionFeatures(weights, device)
    reference, rows = None, []
    for precision in PRECISIONS:
        for batch in s.fid_batches:
            if device.type == "cuda":  # warm-up: cuDNN's autotuning of this shape
                _features(model, sets[0][:batch], batch, precision)
            (a, rate_a), (b, rate_b) = (_features(model, x, batch, precision) for x in sets)
            value = fid(a, b)
            reference = reference if reference is not None else value
            diff = abs(value - reference) / abs(reference)
            verdict = "kept" if diff <= FID_TOLERANCE else "rejected (> 0.1 %)"
            rows.append(Row(f"FID features, {precision}, batch {batch}", (rate_a + rate_b) / 2,
                            "images/s", f"FID {value:.6g}, {diff:.2e} relative to float32: "
                            f"{verdict}"))
    return rows


def run_all(s: Sizes, device: torch.device, weights: str, tmp: Path) -> list[Row]:
    folder = make_domain(tmp / "faces-step", "faces", min(256, 4 * s.trial_images), 32, seed=0)
    rows = cuda_tests(device)
    for name in ("dcgan", "stylegan2"):
        rows += step_vs_plain(name, s, folder, tmp, device)
    for name in s.packing:
        rows += packing(name, s, folder, tmp, device)
    if not Path(weights).is_file():
        return rows + [Row("whole trial and FID features", note=f"not run: no Inception "
                           f"weights at {weights} (GANSWEEP_INCEPTION_WEIGHTS)")]
    rows += whole_trial(s, tmp / "trial", device, weights)
    return rows + fid_precision(s, tmp, device, weights)


@dataclass
class Table:
    machine: str
    device: str
    smoke: bool
    rows: list[Row] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"{self.machine} | device {self.device}{' | smoke sizes' if self.smoke else ''}",
                 "", "| what | measured | note |", "|---|---|---|"]
        for r in self.rows:
            shown = PENDING if r.value is None and r.note == PENDING else (
                "-" if r.value is None else f"{r.value:.4g} {r.unit}")
            smoke = "" if r.cpu_smoke is None else f" (CPU smoke: {r.cpu_smoke:.4g} {r.unit})"
            note = "" if r.note == PENDING else r.note
            lines.append(f"| {r.what} | {shown}{smoke} | {note} |")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> Table:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    ap.add_argument("--out", type=Path, help="also write the table here as JSON")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    if a.smoke:  # one thread: on a busy CPU, threads waiting for each other dominate
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_all(SMOKE if a.smoke else FULL, device, WEIGHTS, Path(tmp))
    if device.type != "cuda":  # a CPU's figures are no GPU's
        for r in rows:
            if r.value is not None:
                r.cpu_smoke, r.value, r.note = r.value, None, PENDING
    table = Table(machine(), str(device), a.smoke, rows)
    print(table.markdown())
    if a.out is not None:
        a.out.write_text(json.dumps(asdict(table), indent=1) + "\n")
    return table


if __name__ == "__main__":
    main()
