"""What a job's terminal shows: the lines TensorFlow, absl and the Jupyter kernel print on every run, which say
nothing about the job, filtered out of file descriptor 2 (this process's stderr and that of the kernels it starts),
whole line by whole line, so that anything else, a real error included, still shows."""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import sys
import threading

# Lines frameworks print on every run that say nothing about the job. Each is matched as a whole line, so anything
# else, a real error included, still reaches the terminal.
NOISE = re.compile("|".join([
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*",  # absl INFO lines: TensorFlow's oneDNN and CPU-feature notices
    r"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.",
    r"E\d{4} [\d:.]+\s+\d+ meta_optimizer\.cc:\d+\] \w+ failed: .*",  # grappler keeps the unoptimised graph
    r"\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption\..*",  # the kernel is on 127.0.0.1
]))
# TensorFlow's own INFO logging off (what it logs before reading this is filtered by NOISE); warnings and errors stay.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "1"}


class NoiseFilter:
    """A text stream that passes to `stream` every line that is not NOISE; a line is judged once it ends."""

    def __init__(self, stream):
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        *lines, self.pending = re.split(r"(?<=[\n\r])", self.pending + text)
        kept = "".join(line for line in lines if not NOISE.fullmatch(line.rstrip("\r\n")))
        if kept:
            self.stream.write(kept)
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        if self.pending and not NOISE.fullmatch(self.pending):
            self.stream.write(self.pending)
        self.pending = ""
        self.stream.flush()


# File descriptor 2 is the process's: one routing at a time. After Ctrl-C it is muted: a kernel shut down in the
# middle of a cell logs the reply it can no longer send (a ZMQError traceback), which is not the job's.
_quiet = {"active": False, "muted": False}


def _interrupted(previous):
    def handler(signum, frame):
        _quiet["muted"] = True
        previous(signum, frame)

    return handler


@contextlib.contextmanager
def quiet_stderr():
    """Route file descriptor 2 through NoiseFilter while the block runs: this process's stderr and that of the
    kernels it starts, which inherit it (TensorFlow's C++ logging and the kernel's own log write there)."""
    os.environ.update({k: v for k, v in QUIET_ENV.items() if k not in os.environ})
    if _quiet["active"]:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 to route (an embedding host)
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sink = open(saved, "w", closefd=False, errors="replace")
    lines = NoiseFilter(sink)

    def pump():
        decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        while chunk := os.read(read_end, 65536):
            if _quiet["muted"]:
                continue
            try:
                lines.write(decode(chunk))
            except Exception:  # the terminal went away: keep draining, so that no writer ever blocks
                pass
        with contextlib.suppress(Exception):
            lines.close()
        os.close(read_end)

    thread = threading.Thread(target=pump, name="drawai-stderr", daemon=True)
    thread.start()
    previous = signal.getsignal(signal.SIGINT)
    catch = callable(previous) and threading.current_thread() is threading.main_thread()  # not if SIGINT is ignored
    if catch:
        signal.signal(signal.SIGINT, _interrupted(previous))
    _quiet.update(active=True, muted=False)
    try:
        yield
    finally:
        if catch:
            signal.signal(signal.SIGINT, previous)
        _quiet["active"] = False
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end here closes: the pump sees its end once the kernels are gone
        thread.join(timeout=5)
        if not thread.is_alive():
            sink.close()
            os.close(saved)
