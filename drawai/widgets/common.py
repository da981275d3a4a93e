"""What the widgets share: a canvas that redraws itself for a new page, predictions on one torch thread, and a
bitmap as a PNG."""

from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np
import torch
from ipycanvas import Canvas
from PIL import Image

from drawai.bitmaps import SIZE


def redraw_on_client_ready(canvas: Canvas, redraw) -> None:
    """Call `redraw()` whenever a browser shows `canvas` afresh (first display, reload, Voila's page).

    ipycanvas sends every drawing command through one manager widget per kernel, which tells the browser
    which canvas to draw on ("switchCanvas") only when the target changes. In Voila the notebook runs
    before the page connects, so the first switch is lost and, with one canvas, never sent again: every
    later command fails in the browser ("reading 'clearCanvas'") and the canvas stays blank. Forgetting
    the target makes the next command name it again.
    """
    def on_ready():
        canvas._canvas_manager._current_canvas = None
        redraw()

    canvas.on_client_ready(on_ready)


@contextmanager
def one_torch_thread():
    """Torch on one thread for the block, then as it was: one 28x28 image is fastest on one thread, because with
    more OpenMP's threads wait on each other for cores that are busy elsewhere, and that lag piles up pointer
    events in the kernel while you draw (docs/dashboard.md, "Start-up and memory, measured")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _png(bitmap: np.ndarray | None, scale: int = 4) -> bytes:
    """The bitmap as the model sees it, bright ink on black, enlarged with visible pixels (floats in [0, 1]:
    (28, 28) grey, or (28, 28, 3) colour)."""
    pixels = np.zeros((SIZE, SIZE), np.uint8) if bitmap is None else np.rint(bitmap * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((SIZE * scale, SIZE * scale), Image.Resampling.NEAREST).save(buf, "png")
    return buf.getvalue()

