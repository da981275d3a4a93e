"""One printed line per step of a long loop (an epoch, a training run): step/total, the figures, elapsed time, ETA.

Jobs stream what a notebook prints to the terminal (`drawai.jobs`), so these lines are a job's progress there,
and they stay in the executed notebook as its log:

    show = StepPrinter(30, "epoch")
    show(1, "loss 5.123  test top-1 4.1%")  # epoch  1/30  loss 5.123  test top-1 4.1%  elapsed 0:20  ETA 9:40
"""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    """1234.5 -> '20:34', 4000 -> '1:06:40'."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StepPrinter:
    """Prints one line per finished step. The ETA is the mean time of the steps finished since this printer was
    made, times the steps left; a resumed loop (its first step not 1) counts only the steps it ran itself."""

    def __init__(self, total: int, unit: str = "epoch", file=None):
        self.total, self.unit, self.file = int(total), unit, file
        self.start = time.perf_counter()
        self.first: int | None = None  # the first step this printer saw

    def line(self, step: int, text: str = "") -> str:
        if self.first is None:
            self.first = step
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / (step - self.first + 1)
        width = len(str(self.total))
        parts = [f"{self.unit} {step:>{width}}/{self.total}", text, f"elapsed {clock(elapsed)}",
                 f"ETA {clock(per_step * (self.total - step))}"]
        return "  ".join(p for p in parts if p)

    def __call__(self, step: int, text: str = "") -> str:
        out = self.line(step, text)
        print(out, file=self.file or sys.stdout, flush=True)
        return out

