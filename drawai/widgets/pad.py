"""DrawingPad: draw with mouse or finger, see the 28x28 bitmap the model sees and its top-5 guesses update while
you draw.

The pad keeps the strokes, not the pixels: every update renders them with `strokes.render_strokes`, the
same canonical form the classifier was trained on, so what you draw is judged like a Quick, Draw! drawing.
The browser only sends pointer positions; the kernel draws the lines back onto the canvas and predicts.
"""

from __future__ import annotations

import base64
import html
import time

import ipywidgets as widgets
import numpy as np
import torch
import traitlets
from ipycanvas import Canvas, hold_canvas

from drawai import categories as cats
from drawai.bitmaps import EmptyDrawingError
from drawai.strokes import BadStrokesError, parse_strokes, render_strokes
from drawai.widgets.common import _png, one_torch_thread, redraw_on_client_ready

INK, PAPER = "#1b1b1b", "#ffffff"


class DrawingPad(widgets.VBox):
    """A canvas to draw on, Clear and Undo buttons, the canonical bitmap, and a live top-5 chart.

    Python access: `pad.strokes` (list of strokes, each a list of (x, y) canvas points), `pad.bitmap`
    (the canonical (28, 28) float32 the model sees, None when empty), `pad.predictions` (top-5
    (label, probability) pairs, [] without a classifier or drawing), `pad.message` (what the pad tells
    the user), `pad.explanation` ({} while Explain is off; else the top guess's "label", its "saliency"
    map and the "nearest" training drawings of the top two guesses, `drawai.explain`'s). They are traitlets:
    `pad.observe(callback, names="predictions")` fires on every change.

    `classifier` is anything with `.categories` and `.predict(images, k)` (a `drawai.classifier.Classifier`;
    its `.probabilities(images, canonical=True)` is used when present). `categories` (a preset such as
    "classic10" or a list of names) restricts the guesses to those, renormalising the probabilities.
    Explain needs a `drawai.classifier.Classifier` (its model's gradients); with anything else it is disabled.
    """

    bitmap = traitlets.Instance(np.ndarray, allow_none=True)
    predictions = traitlets.List()
    message = traitlets.Unicode()
    explanation = traitlets.Dict()

    PREDICT_EVERY = 0.1  # seconds of kernel time between predictions while a stroke is drawn
    TOP_K = 5
    NEIGHBOURS = 4  # training drawings shown for each of the top two guesses

    def __init__(self, classifier=None, categories=None, size: int = 280, **kwargs):
        if not isinstance(size, int) or isinstance(size, bool) or not 56 <= size <= 2000:
            raise ValueError(f"size must be a whole number of pixels between 56 and 2000, got {size!r}")
        self.classifier = classifier
        self.labels, self._columns = _restrict(classifier, categories)
        self.clock = time.monotonic  # replaceable, for tests of the throttle
        self._strokes: list[list[tuple[float, float]]] = []
        self._drawing = False
        self._last_update = -np.inf
        self.line_width = size / 35  # ~ the look of Quick, Draw!'s own canvas

        # A fixed pixel layout: without it a canvas stretches to the page width and the pointer
        # positions (in canvas pixels) still work, but the pad is huge.
        self.canvas = Canvas(width=size, height=size, layout=widgets.Layout(
            width=f"{size}px", height=f"{size}px", border="1px solid #888", flex="0 0 auto"))
        self.canvas.add_class("drawai-pad-canvas")
        self.clear_button = widgets.Button(description="Clear", icon="trash", layout=widgets.Layout(width="90px"))
        self.undo_button = widgets.Button(description="Undo", icon="undo", layout=widgets.Layout(width="90px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="112px", height="112px",
                                                                      border="1px solid #888"))
        self.image.add_class("drawai-pad-bitmap")
        self.chart = widgets.HTML(layout=widgets.Layout(width="260px"))
        self.chart.add_class("drawai-pad-chart")
        self.status = widgets.HTML()
        self.status.add_class("drawai-pad-message")
        self.explain_button = widgets.ToggleButton(
            description="Explain", icon="search", layout=widgets.Layout(width="100px"),
            disabled=not isinstance(getattr(classifier, "model", None), torch.nn.Module),
            tooltip="Colour the pixels that raised (red) or lowered (blue) the top guess, and show the training "
                    "drawings the model reads most alike")
        self.explain_button.add_class("drawai-pad-explain")
        self.neighbours = widgets.HTML(layout=widgets.Layout(width="260px"))
        self.neighbours.add_class("drawai-pad-neighbours")
        side = widgets.VBox([widgets.HTML("<b>What the model sees</b> (28&times;28)"), self.image,
                             widgets.HTML("<b>Its guesses</b>"), self.chart, self.neighbours],
                            layout=widgets.Layout(margin="0 0 0 16px"))
        left = widgets.VBox([self.canvas, widgets.HBox([self.clear_button, self.undo_button, self.explain_button])])
        super().__init__([widgets.HBox([left, side]), self.status], **kwargs)
        self.add_class("drawai-pad")

        self.canvas.on_mouse_down(self.start_stroke)
        self.canvas.on_mouse_move(self.extend_stroke)
        self.canvas.on_mouse_up(lambda x, y: self.end_stroke())
        self.canvas.on_mouse_out(lambda x, y: self.end_stroke())  # released outside: the stroke ends here
        self.canvas.on_touch_start(_first_finger(self.start_stroke))
        self.canvas.on_touch_move(_first_finger(self.extend_stroke))
        self.canvas.on_touch_end(lambda touches: self.end_stroke())  # `touches` = fingers still down
        self.canvas.on_touch_cancel(lambda touches: self.end_stroke())
        redraw_on_client_ready(self.canvas, self._redraw)  # a new page gets a blank canvas: draw it again
        self.clear_button.on_click(lambda _: self.clear())
        self.undo_button.on_click(lambda _: self.undo())
        self.explain_button.observe(lambda _: self.update(), names="value")
        self._redraw()
        self.update()

    # --- what the event handlers call (and tests, and notebooks) ------------------------------------

    def start_stroke(self, x: float, y: float) -> None:
        self._drawing = True
        self._strokes.append([(float(x), float(y))])
        with hold_canvas():
            self._set_pen()
            self.canvas.fill_circle(x, y, self.line_width / 2)

    def extend_stroke(self, x: float, y: float) -> None:
        """Add a point to the stroke being drawn (mouse moves without a button down are ignored)."""
        if not self._drawing:
            return
        stroke = self._strokes[-1]
        x0, y0 = stroke[-1]
        if abs(x - x0) + abs(y - y0) < 1:  # sub-pixel jitter adds points, not ink
            return
        stroke.append((float(x), float(y)))
        self.canvas.stroke_line(x0, y0, x, y)  # with the pen start_stroke set
        if self.clock() - self._last_update >= self.PREDICT_EVERY:
            self.update()

    def end_stroke(self) -> None:
        if self._drawing:
            self._drawing = False
            self.update()  # always one on stroke end, whatever the throttle skipped

    def undo(self) -> None:
        """Remove the last stroke."""
        self._drawing = False
        if self._strokes:
            self._strokes.pop()
        self._redraw()
        self.update()

    def clear(self) -> None:
        self._drawing = False
        self._strokes = []
        self._redraw()
        self.update()

    def set_strokes(self, strokes) -> None:
        """Replace the drawing with `strokes` (lists of (x, y) points, as `pad.strokes` gives them).

        Strokes that cannot be drawn leave the pad empty with a message saying why (no exception:
        the pad reports in the widget).
        """
        self._drawing = False
        try:
            self._strokes = [[(float(x), float(y)) for x, y in s] for s in strokes]
            if any(s for s in self._strokes):
                parse_strokes(self._strokes, layout="points")  # NaN, infinity
        except (TypeError, ValueError) as e:
            self._strokes = []
            self._redraw()
            reason = e if isinstance(e, BadStrokesError) else "each stroke must be a list of (x, y) points"
            self._show(None, [], f"Cannot read the drawing: {reason}.")
            return
        self._redraw()
        self.update()

    @property
    def strokes(self) -> list[list[tuple[float, float]]]:
        return [list(s) for s in self._strokes]

    def update(self) -> None:
        """Render the strokes into the canonical bitmap and predict now (the handlers throttle this)."""
        self._last_update = self.clock()
        try:
            bitmap = render_strokes(self._strokes, layout="points")
        except EmptyDrawingError:
            self._show(None, [], "Draw something in the box: " + (
                "the model guesses while you draw." if self.classifier else "no classifier is loaded, "
                "so you will see only the bitmap it would get."))
            return
        except ValueError as e:  # set_strokes checks, and a pointer cannot send NaN: a bug if it shows
            self._show(None, [], f"Cannot read the drawing: {e}.")
            return
        if self.classifier is None:
            self._show(bitmap, [], "No classifier loaded: this is the bitmap a model would see.")
            return
        try:
            probs = self._probabilities(bitmap)
        except Exception as e:  # a widget callback must not end in a traceback nobody sees
            self._show(bitmap, [], f"The classifier failed on this drawing: {type(e).__name__}: {e}")
            return
        top = np.argsort(-probs, kind="stable")[:self.TOP_K]
        self._show(bitmap, [(self.labels[i], float(probs[i])) for i in top], "")
        if self.explain_button.value:  # live: its p95 is under 50 ms (docs/experiments/explain.md)
            self._explain(bitmap)

    def _explain(self, bitmap: np.ndarray) -> None:
        """Saliency of the top guess over the 28x28 view; nearest training drawings of the top two guesses."""
        from drawai import explain

        clf, guesses = self.classifier, [label for label, _ in self.predictions[:2]]
        if not explain.has_index(clf):
            self.status.value = ("<span style='color:#555'>Indexing the training drawings for Explain, once for "
                                 "this model (about a minute)&hellip;</span>")
        try:
            with one_torch_thread():
                saliency = explain.saliency(clf, bitmap, label=guesses[0], canonical=True)
                nearest = {g: explain.nearest(clf, bitmap, k=self.NEIGHBOURS, label=g, canonical=True)
                           for g in guesses}
        except Exception as e:  # a widget callback must not end in a traceback nobody sees
            self._show(bitmap, self.predictions, f"Explain failed on this drawing: {type(e).__name__}: {e}")
            return
        self.explanation = {"label": guesses[0], "saliency": saliency, "nearest": nearest}
        self.image.value = _saliency_png(bitmap, saliency)
        self.neighbours.value = _neighbours_html(nearest)
        self.status.value = ""

    # --- internals ---------------------------------------------------------------------------------------

    def _probabilities(self, bitmap: np.ndarray) -> np.ndarray:
        """Probabilities over `self.labels`: the classifier's, restricted and renormalised."""
        clf = self.classifier
        with one_torch_thread():
            if hasattr(clf, "probabilities"):
                full = np.asarray(clf.probabilities(bitmap, canonical=True), dtype=np.float64).reshape(-1)
            else:  # only .predict: ask for every class
                index = {name: i for i, name in enumerate(clf.categories)}
                full = np.zeros(len(index))
                for name, p in clf.predict(bitmap, k=len(index)):
                    full[index[name]] = p
        p = full[self._columns]
        total = p.sum()
        return p / total if total > 0 else np.full(len(p), 1 / len(p))

    def _show(self, bitmap, predictions, message) -> None:
        self.bitmap = bitmap
        self.predictions = predictions
        self.message = message
        self.image.value = _png(bitmap)
        self.chart.value = _chart(predictions)
        if not (self.explain_button.value and predictions):  # else `_explain` replaces them at once
            self.explanation = {}
            self.neighbours.value = ""
        self.status.value = f"<span style='color:#555'>{html.escape(message)}</span>" if message else ""

    def _set_pen(self) -> None:
        self.canvas.fill_style = self.canvas.stroke_style = INK
        self.canvas.line_width = self.line_width
        self.canvas.line_cap = "round"
        self.canvas.line_join = "round"

    def _redraw(self) -> None:
        with hold_canvas():
            self.canvas.clear()
            self.canvas.fill_style = PAPER
            self.canvas.fill_rect(0, 0, self.canvas.width, self.canvas.height)
            self._set_pen()
            for stroke in self._strokes:
                if len(stroke) == 1:
                    self.canvas.fill_circle(*stroke[0], self.line_width / 2)
                else:
                    self.canvas.stroke_lines(stroke)


def _first_finger(handler):
    """Touch events carry every finger on the screen; one finger draws."""
    def on_touch(touches):
        if touches:
            handler(*touches[0])
    return on_touch


def _restrict(classifier, categories) -> tuple[list[str], np.ndarray]:
    """The labels the pad shows and their columns in the classifier's output."""
    if classifier is None:
        names = cats.resolve(categories) if categories is not None else []
        return names, np.arange(len(names))
    known = list(classifier.categories)
    if categories is None:
        return known, np.arange(len(known))
    names = cats.resolve(categories)
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"the classifier does not know {missing}; it was trained on {len(known)} categories "
                         f"({', '.join(known[:5])}{', ...' if len(known) > 5 else ''})")
    return names, np.array([known.index(n) for n in names])


def _saliency_png(bitmap: np.ndarray, saliency: np.ndarray) -> bytes:
    """`explain.overlay`: the bitmap in grey, tinted red where it raised the guess and blue where it lowered it."""
    from drawai.explain import overlay

    return _png(overlay(bitmap, saliency))


def _neighbours_html(nearest: dict) -> str:
    """For each guess, its nearest training drawings as the model sees them (inline PNGs), distance on hover."""
    from drawai.bitmaps import to_canonical

    rows = []
    for label, near in nearest.items():
        images = "".join(
            f"<img src='data:image/png;base64,{base64.b64encode(_png(image, scale=2)).decode('ascii')}' width='56' "
            f"height='56' title='distance {d:.3f}' alt='a training {html.escape(label)}' style='margin-right:4px'>"
            for image, d in zip(to_canonical(near.images) if len(near.images) else [], near.distances))
        rows.append(f"<div class='drawai-neighbours' style='margin-top:6px'><div style='font-size:12px'>Nearest "
                    f"training drawings of <b>{html.escape(label)}</b></div><div>{images}</div></div>")
    return "".join(rows)


def _chart(predictions: list[tuple[str, float]]) -> str:
    if not predictions:
        return "<div style='color:#888'>&mdash;</div>"
    rows = "".join(
        f"<div class='drawai-guess' style='display:flex;align-items:center;margin:2px 0'>"
        f"<span style='width:110px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap'>{html.escape(label)}"
        f"</span><span style='display:inline-block;height:12px;width:{round(100 * p)}px;background:#4c78a8'>"
        f"</span><span style='margin-left:6px'>{p:.0%}</span></div>"
        for label, p in predictions)
    return f"<div>{rows}</div>"
