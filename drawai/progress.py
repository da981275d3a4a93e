"""One printed line per step of a long loop (an epoch, a training run): step/total, the figures, elapsed time, ETA.

Jobs stream what a notebook prints to the terminal (`drawai.jobs`), so these lines are a job's progress there,
and they stay in the executed notebook as its log:

    show = StepPrinter(30, "epoch")
    show(1, "loss 5.123  test top-1 4.1%")  # epoch  1/30  loss 5.123  test top-1 4.1%  elapsed 0:20  ETA 9:40

`Heartbeat` covers the steps between: a job's stream that says the work goes on when nothing was printed for a while.
"""

from __future__ import annotations

import sys
import threading
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


class Heartbeat:
    """A text stream that passes everything to `stream` and, after `every` seconds with nothing written, writes a
    line saying the work goes on: a long step that prints nothing (an evaluation, a plot) never looks like a hung
    terminal. Use it as a context manager: the watching thread runs inside the block."""

    def __init__(self, stream, every: float = 30.0):
        self.stream, self.every = stream, every
        self.start = self.last_output = self.last_line = time.perf_counter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="drawai-heartbeat", daemon=True)

    def write(self, text: str) -> int:
        self.last_output = self.last_line = time.perf_counter()
        written = self.stream.write(text)
        self.stream.flush()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def _watch(self) -> None:
        while not self.done.wait(min(1.0, self.every / 2)):
            now = time.perf_counter()
            if now - self.last_line >= self.every:
                self.last_line = now
                self.stream.write(f"  ... still working: {clock(now - self.last_output)} since the last line, "
                                  f"{clock(now - self.start)} in all\n")
                self.stream.flush()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
