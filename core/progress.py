"""What a long command shows while it runs: a progress bar on a terminal (count, rate, ETA and
the latest values), one line per milestone when the output is not a terminal (a log, CI),
nothing when quiet. Written to stderr, so a command's result on stdout stays parseable."""
from __future__ import annotations

import sys
import time
from typing import IO, Any


def _fmt(values: dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in values.items() if v is not None)


class Progress:
    """``update`` advances the count (and shows ``values`` on the bar); ``milestone`` records
    values worth a line of their own (an evaluation): on the bar's line on a terminal, a
    printed line otherwise."""

    def __init__(self, total: int, unit: str, desc: str, quiet: bool = False,
                 stream: IO[str] | None = None, done: int = 0):
        self.stream = stream or sys.stderr
        self.quiet, self.total, self.unit, self.desc = quiet, total, unit, desc
        self.count, self.start = done, time.perf_counter()
        self.values: dict[str, Any] = {}
        tty = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        if tty:  # imported only for a bar: the training loop runs without tqdm installed
            from tqdm import tqdm
        self.bar = tqdm(total=total, initial=done, unit=unit, desc=desc, file=self.stream,
                        dynamic_ncols=True, leave=True) if tty else None

    def update(self, n: int = 1, **values: Any) -> None:
        self.count += n
        self.values.update(values)
        if self.bar is not None:
            self.bar.set_postfix_str(_fmt(self.values), refresh=False)
            self.bar.update(n)

    def milestone(self, **values: Any) -> None:
        self.values.update(values)
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(_fmt(self.values))
            return
        elapsed = time.perf_counter() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        print(f"{self.desc}: {self.count}/{self.total} {self.unit} ({rate:.3g} {self.unit}/s, "
              f"{elapsed:.0f} s) {_fmt(self.values)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
