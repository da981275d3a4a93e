"""Notebook widgets (ipycanvas + ipywidgets). DrawingPad: draw with mouse or finger, see the 28x28 bitmap
the model sees and its top-5 guesses update while you draw. GeneratorPanel: pick a category, a seed and a
count, and see the generator's drawings with the classifier's verdict on each. FightArena: the GAN draws,
the classifier guesses, on a timer, with a running score (`drawai.fight` keeps the rules).

The pad keeps the strokes, not the pixels: every update renders them with `strokes.render_strokes`, the
same canonical form the classifier was trained on, so what you draw is judged like a Quick, Draw! drawing.
The browser only sends pointer positions; the kernel draws the lines back onto the canvas and predicts.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import time
from contextlib import contextmanager

import ipywidgets as widgets
import numpy as np
import torch
import traitlets
from ipycanvas import Canvas, hold_canvas
from PIL import Image

from drawai import categories as cats
from drawai.bitmaps import SIZE, EmptyDrawingError
from drawai.fight import FightError, Referee
from drawai.strokes import BadStrokesError, parse_strokes, render_strokes

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


class GeneratorPanel(widgets.VBox):
    """Pick a category, a seed and a count, press Generate: a grid of the generator's drawings, each with
    the classifier's verdict (its top guess and confidence, green when it names the requested category).

    `generator` is anything with `.categories` and `.generate(label, n, seed)` -> (n, 28, 28) canonical
    images in [0, 1] (a `drawai.gan` model); `classifier` as for DrawingPad, or None for drawings without
    verdicts. `categories` (a preset or a list of names) limits the choice of category; the classifier
    still guesses among all of its own categories, so a verdict is as hard as the classifier's real job.

    A generator with a `truncation` (a `drawai.gan` model) also gets a Variety choice: its own noise first (as
    trained), then the others: N(0, 1) truncated at +-0.5, at +-1 and untruncated, and for a GAN with an encoder
    each label's noise fitted to people's drawings of it (`gan.FittedNoise`).

    Python access: `panel.generate()` (what the button does), `panel.images` (the last drawings),
    `panel.verdicts` (one (guess, probability) per drawing, [] without a classifier), `panel.message`.
    """

    images = traitlets.Instance(np.ndarray, allow_none=True)
    verdicts = traitlets.List()
    message = traitlets.Unicode()

    MAX_COUNT = 64  # a grid a page can show; more is a mistake, not a wish

    def __init__(self, generator, classifier=None, categories=None, count: int = 8, seed: int = 0, **kwargs):
        known = list(generator.categories)
        names = known if categories is None else cats.resolve(categories)
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(f"the generator does not draw {missing}; it draws {len(known)} categories "
                             f"({', '.join(known[:5])}{', ...' if len(known) > 5 else ''})")
        if classifier is not None:
            unknown = [n for n in names if n not in classifier.categories]
            if unknown:
                raise ValueError(f"the classifier does not know {unknown}, so it cannot judge those drawings")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= self.MAX_COUNT:
            raise ValueError(f"count must be a whole number from 1 to {self.MAX_COUNT}, got {count!r}")
        self.generator, self.classifier = generator, classifier

        self.category = widgets.Dropdown(options=names, value=names[0], description="Category")
        self.category.add_class("drawai-generate-category")
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="Seed",
                                           layout=widgets.Layout(width="180px"))
        self.seed.add_class("drawai-generate-seed")
        self.count = widgets.BoundedIntText(value=count, min=1, max=self.MAX_COUNT, description="Drawings",
                                            layout=widgets.Layout(width="180px"))
        self.count.add_class("drawai-generate-count")
        self.variety = variety_choice(generator)
        self.button = widgets.Button(description="Generate", icon="paint-brush", button_style="primary")
        self.button.add_class("drawai-generate-button")
        self.summary = widgets.HTML()
        self.summary.add_class("drawai-generate-summary")
        self.grid = widgets.HTML()
        self.grid.add_class("drawai-generate-grid")
        settings = [self.count] + ([self.variety] if self.variety is not None else []) + [self.button]
        super().__init__([widgets.HBox([self.category, self.seed]), widgets.HBox(settings),
                          self.summary, self.grid], **kwargs)
        self.add_class("drawai-generate")
        self.button.on_click(lambda _: self.generate())
        self._show(None, [], "Pick a category and press Generate.")

    def generate(self) -> None:
        """Draw `count` drawings of the chosen category with the chosen seed, and judge each."""
        label, n, seed = self.category.value, int(self.count.value), int(self.seed.value)
        chosen = self.variety is not None and self.variety.value != "model"  # else the generator's own default
        noise = VARIETY[self.variety.value] if chosen else {}
        try:
            images = np.asarray(self.generator.generate(label, n, seed=seed, **noise), dtype=np.float32)
        except Exception as e:  # shown in the widget: a callback's traceback reaches nobody
            self._show(None, [], f"The generator failed: {type(e).__name__}: {e}")
            return
        if self.classifier is None:
            self._show(images, [], f"{n} drawings of {label} (seed {seed}{self._noise_note()}); no classifier "
                                   "loaded to judge them.")
            return
        try:
            with one_torch_thread():
                probs = np.asarray(self.classifier.probabilities(images, canonical=True)).reshape(len(images), -1)
        except Exception as e:
            self._show(images, [], f"The classifier failed on these drawings: {type(e).__name__}: {e}")
            return
        names = list(self.classifier.categories)
        top = probs.argmax(axis=1)
        verdicts = [(names[j], float(probs[i, j])) for i, j in enumerate(top)]
        right = sum(guess == label for guess, _ in verdicts)
        self._show(images, verdicts, f"{right} of {n} drawings of {label} recognised by the classifier "
                                     f"(seed {seed}{self._noise_note()}).")

    def _noise_note(self) -> str:
        if self.variety is None:
            return ""
        noise = VARIETY.get(self.variety.value) or own_noise(self.generator)
        return ", noise " + describe_noise(noise, "fitted to people's drawings of it")

    def _show(self, images, verdicts, message) -> None:
        self.images, self.verdicts, self.message = images, verdicts, message
        self.summary.value = f"<span>{html.escape(message)}</span>"
        self.grid.value = _drawing_grid(images, verdicts, self.category.value) if images is not None else ""


# The Variety choices besides the generator's own noise, as generate() arguments: from clearest to most varied.
VARIETY = {"0.5": {"noise": "normal", "truncation": 0.5}, "1": {"noise": "normal", "truncation": 1.0},
           "none": {"noise": "normal", "truncation": None}, "fitted": {"noise": "fitted", "truncation": None}}
VARIETY_LABELS = {"0.5": "clearer (±0.5)", "1": "varied (±1)", "none": "more varied (untruncated)",
                  "fitted": "closest to people's (fitted)"}


def own_noise(generator) -> dict:
    """What `generator.generate` draws from when not told: its noise and truncation, as a VARIETY value."""
    return {"noise": getattr(generator, "noise", "normal"), "truncation": generator.truncation}


def describe_noise(noise: dict, fitted: str = "fitted") -> str:
    """A VARIETY value in words: "truncated at ±1", "untruncated", "fitted", "fitted, truncated at ±1"."""
    cut = "untruncated" if noise["truncation"] is None else f"truncated at ±{noise['truncation']:g}"
    if noise["noise"] == "normal":
        return cut
    return fitted if noise["truncation"] is None else f"{fitted}, {cut}"


def variety_choice(generator) -> widgets.Dropdown | None:
    """GeneratorPanel's Variety: the generator's own noise (how it was tuned to draw) first, then the others from
    clearest to most varied; None for a generator without a `truncation` (it draws one way)."""
    if not hasattr(generator, "truncation"):
        return None
    own = own_noise(generator)
    short = describe_noise(own).replace("truncated at ", "")
    options = [(f"as trained ({short})", "model")]
    fitted = "fitted" in getattr(generator, "noises", ("normal",))  # a GAN with an encoder: gan.FittedNoise
    options += [(VARIETY_LABELS[key], key) for key, noise in VARIETY.items()
                if noise != own and (noise["noise"] == "normal" or fitted)]
    choice = widgets.Dropdown(options=options, value="model", description="Variety",
                              layout=widgets.Layout(width="260px"))
    choice.add_class("drawai-generate-variety")
    return choice


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
    """One 28x28 image is fastest on one thread. With more, OpenMP's threads wait on each other for cores
    that are busy elsewhere: measured 1.5 ms on one thread against 140-210 ms on two, on 2 loaded cores,
    and that lag piles up pointer events in the kernel while you draw."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def _png(bitmap: np.ndarray | None, scale: int = 4) -> bytes:
    """The bitmap as the model sees it, bright ink on black, enlarged with visible pixels (floats in [0, 1]:
    (28, 28) grey, or (28, 28, 3) colour)."""
    pixels = np.zeros((SIZE, SIZE), np.uint8) if bitmap is None else np.rint(bitmap * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((SIZE * scale, SIZE * scale), Image.Resampling.NEAREST).save(buf, "png")
    return buf.getvalue()


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


def _drawing_grid(images: np.ndarray, verdicts: list[tuple[str, float]], label: str) -> str:
    """The drawings as a grid of inline PNGs (one HTML update, not a widget per drawing), each captioned
    with the classifier's guess: green when it names `label`, red when not."""
    cells = []
    for i, image in enumerate(images):
        src = "data:image/png;base64," + base64.b64encode(_png(image, scale=3)).decode("ascii")
        caption = ""
        if verdicts:
            guess, p = verdicts[i]
            ok = guess == label
            text = f"{html.escape(guess)} {p:.0%}"
            caption = (f"<figcaption class='drawai-verdict {'right' if ok else 'wrong'}' title='{text}' style='color:"
                       f"{'#2e7d32' if ok else '#c62828'};font-size:12px;overflow:hidden;text-overflow:ellipsis;"
                       f"white-space:nowrap'>{'&#10003;' if ok else '&#10007;'} {text}</figcaption>")
        cells.append(f"<figure style='margin:0;width:84px'><img src='{src}' width='84' height='84' "
                     f"alt='generated {html.escape(label)}' style='display:block'>{caption}</figure>")
    return ("<div style='display:grid;grid-template-columns:repeat(auto-fill,84px);gap:8px;max-width:840px'>"
            + "".join(cells) + "</div>")


# --- the fight, live ---------------------------------------------------------------------------------------------

class FightArena(widgets.VBox):
    """The original draw-ai fight page, scored: every `interval` seconds a random label, the generator's
    drawing of it, the classifier's guess, won or lost; a running score and a strip of the last rounds.

    The rounds are `drawai.fight.Referee`'s: the generator draws one of the chosen categories and the
    classifier picks one of the same categories (`categories`: a preset such as "classic10", a list of
    names, or None for all the generator draws; the Dropdown switches between the sets that fit both
    models, and a switch starts the score again).

    Python access: `play_round()` plays one round now and returns dict(label, guess, confidence, win)
    (confidence: the probability the classifier gave its guess); `start()` / `stop()` run rounds on a
    timer as an asyncio task on the running event loop (a Jupyter kernel's or Voila's), so the kernel
    stays free between rounds; `rounds` and `wins` are observable traitlets; `history` holds the last
    rounds (newest last, each with its drawing); `message` says what went wrong, if anything did.
    """

    rounds = traitlets.Int(0)
    wins = traitlets.Int(0)
    message = traitlets.Unicode()

    HISTORY = 12  # rounds in the strip
    SCALE = 8  # canvas pixels per drawing pixel
    MIN_INTERVAL, MAX_INTERVAL = 0.1, 5.0

    def __init__(self, generator, classifier, categories=None, interval: float = 1.0, seed: int = 0, **kwargs):
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not (
                self.MIN_INTERVAL <= interval <= self.MAX_INTERVAL):
            raise FightError(f"interval must be a number of seconds between {self.MIN_INTERVAL} and "
                             f"{self.MAX_INTERVAL}, got {interval!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise FightError(f"seed must be a non-negative integer, got {seed!r}")
        self.referee = Referee(generator, classifier, categories)  # every check, before a widget exists
        self.generator, self.classifier = generator, classifier
        self.history: list[dict] = []
        self._rng = np.random.default_rng(seed)
        self._task = None

        size = SIZE * self.SCALE
        self.asked = widgets.HTML()
        self.asked.add_class("drawai-fight-asked")
        self.canvas = Canvas(width=size, height=size, layout=widgets.Layout(
            width=f"{size}px", height=f"{size}px", border="1px solid #888", flex="0 0 auto"))
        self.canvas.add_class("drawai-fight-canvas")
        self.verdict = widgets.HTML()
        self.verdict.add_class("drawai-fight-verdict")
        self.score = widgets.HTML(style={"font_size": "18px"})  # plain text: "7 / 10 won (70 %)"
        self.score.add_class("drawai-fight-score")
        self.toggle = widgets.ToggleButton(description="Start", icon="play", tooltip="Start or stop the rounds",
                                           layout=widgets.Layout(width="100px"))
        self.toggle.add_class("drawai-fight-toggle")
        self.step_button = widgets.Button(description="One round", icon="step-forward",
                                          layout=widgets.Layout(width="120px"))
        self.step_button.add_class("drawai-fight-step")
        self.speed = widgets.FloatSlider(value=float(interval), min=self.MIN_INTERVAL, max=self.MAX_INTERVAL,
                                         step=0.1, description="s / round", readout_format=".1f",
                                         layout=widgets.Layout(width="300px"))
        self.speed.add_class("drawai-fight-speed")
        choices = category_choices(generator, classifier, self.referee.labels)
        self.category_choice = widgets.Dropdown(options=choices, value=tuple(self.referee.labels),
                                                description="Categories", layout=widgets.Layout(width="300px"))
        self.category_choice.add_class("drawai-fight-categories")
        self._slots = [widgets.Image(format="png", layout=widgets.Layout(width="56px", height="56px"))
                       for _ in range(self.HISTORY)]
        self._captions = [widgets.HTML(layout=widgets.Layout(width="64px")) for _ in range(self.HISTORY)]
        self.strip = widgets.HBox([widgets.VBox([img, cap], layout=widgets.Layout(margin="0 2px"))
                                   for img, cap in zip(self._slots, self._captions)])
        self.strip.add_class("drawai-fight-history")
        self.status = widgets.HTML()
        self.status.add_class("drawai-fight-message")
        controls = widgets.VBox([widgets.HBox([self.toggle, self.step_button]), self.speed, self.category_choice,
                                 self.score], layout=widgets.Layout(margin="0 0 0 16px"))
        super().__init__([widgets.HBox([widgets.VBox([self.asked, self.canvas, self.verdict]), controls]),
                          widgets.HTML("<b>Last rounds</b> (newest on the right)"), self.strip, self.status],
                         **kwargs)
        self.add_class("drawai-fight")

        self.toggle.observe(self._on_toggle, names="value")
        self.step_button.on_click(lambda _: self._play_reporting_errors())
        self.category_choice.observe(lambda change: self.set_categories(list(change["new"])), names="value")
        redraw_on_client_ready(self.canvas, self._draw_last)  # a new page gets a blank canvas
        self._show()

    # --- the rounds ------------------------------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between rounds on the timer (the speed slider)."""
        return float(self.speed.value)

    @interval.setter
    def interval(self, seconds: float) -> None:
        self.speed.value = seconds

    @property
    def labels(self) -> list[str]:
        return list(self.referee.labels)

    def play_round(self) -> dict:
        """One round now: a random label, its drawing, the classifier's guess. Returns the round's dict."""
        labels = self.referee.labels
        asked = int(self._rng.integers(len(labels)))
        noise_seed = int(self._rng.integers(2**31))
        with one_torch_thread():
            image = self.referee.draw(np.array([asked]), noise_seed)
            probs = self.referee.judge(image)[0]
        guess = int(probs.argmax())
        result = {"label": labels[asked], "guess": labels[guess], "confidence": float(probs[guess]),
                  "win": guess == asked}
        self.history = (self.history + [{**result, "image": image[0]}])[-self.HISTORY:]
        self.wins += int(result["win"])  # before rounds: an observer of rounds sees both up to date
        self.rounds += 1
        self.message = ""
        self._show()
        return result

    def start(self) -> None:
        """Play a round every `interval` seconds until `stop()`, without blocking the kernel."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise FightError("start() plays on the running event loop of a Jupyter kernel or Voila, and there is "
                             "none here; call play_round() in a loop instead") from None
        self._task = loop.create_task(self._play_on_timer())
        self.toggle.value = True

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.toggle.value = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def reset(self) -> None:
        """Start the score again (the timer keeps running if it was)."""
        self.history = []
        self.wins = 0
        self.rounds = 0
        self._show()

    def set_categories(self, categories) -> None:
        """Play on another category set (checked against both models); the score starts again."""
        referee = Referee(self.generator, self.classifier, categories)
        self.referee = referee
        if self.category_choice.value != tuple(referee.labels):
            options = list(self.category_choice.options)
            if tuple(referee.labels) not in [value for _, value in options]:
                self.category_choice.options = options + [(f"your {len(referee.labels)} categories",
                                                           tuple(referee.labels))]
            self.category_choice.value = tuple(referee.labels)  # fires set_categories again: same set, no-op
        self.reset()

    async def _play_on_timer(self) -> None:
        while True:
            if not self._play_reporting_errors():
                self._task = None
                self.toggle.value = False
                return
            await asyncio.sleep(self.interval)

    def _play_reporting_errors(self) -> bool:
        """A round for a button or the timer: a failure is shown in the widget (nobody sees a traceback)."""
        try:
            self.play_round()
        except Exception as e:
            self.message = f"The round failed: {type(e).__name__}: {e}"
            self.status.value = f"<span style='color:#b00'>{html.escape(self.message)}</span>"
            return False
        return True

    def _on_toggle(self, change) -> None:
        if change["new"]:
            try:
                self.start()
            except ValueError as e:
                self.message = str(e)
                self.status.value = f"<span style='color:#b00'>{html.escape(self.message)}</span>"
                self.toggle.value = False
        else:
            self.stop()
        self.toggle.description, self.toggle.icon = ("Stop", "stop") if self.toggle.value else ("Start", "play")

    # --- what the widget shows ------------------------------------------------------------------------------------

    def _show(self) -> None:
        self.score.value = score_text(self.wins, self.rounds)
        last = self.history[-1] if self.history else None
        if last is None:
            self.asked.value = f"<b>Ready:</b> {len(self.referee.labels)} categories, chance {1 / len(self.labels):.0%}"
            self.verdict.value = "Press <b>Start</b>: the GAN draws, the classifier guesses."
        else:
            self.asked.value = f"The GAN was asked to draw: <b>{html.escape(last['label'])}</b>"
            color, word = ("#2ca02c", "won") if last["win"] else ("#d62728", "lost")
            self.verdict.value = (f"The classifier says <b>{html.escape(last['guess'])}</b> "
                                  f"({last['confidence']:.0%}): <b style='color:{color}'>{word}</b>")
        self._draw_last()
        blank = _png(None, scale=2)
        padded = [None] * (self.HISTORY - len(self.history)) + self.history
        for slot, caption, item in zip(self._slots, self._captions, padded):
            for name in ("drawai-fight-win", "drawai-fight-lose"):
                slot.remove_class(name)
            if item is None:
                slot.value, slot.layout.border, caption.value = blank, "3px solid #ddd", ""
                continue
            slot.value = _png(item["image"], scale=2)
            slot.layout.border = f"3px solid {'#2ca02c' if item['win'] else '#d62728'}"
            slot.add_class("drawai-fight-win" if item["win"] else "drawai-fight-lose")
            caption.value = (f"<div style='font-size:10px;line-height:1.1;overflow:hidden'>"
                             f"{html.escape(item['label'])}<br>&rarr; {html.escape(item['guess'])}</div>")
        if not self.message:
            self.status.value = ""

    def _draw_last(self) -> None:
        image = self.history[-1]["image"] if self.history else np.zeros((SIZE, SIZE), np.float32)
        paper = np.rint(255 * (1 - image)).astype(np.uint8)  # dark ink on white, like the pad
        self.canvas.put_image_data(np.kron(paper, np.ones((self.SCALE, self.SCALE), np.uint8)), 0, 0)


def score_text(wins: int, rounds: int) -> str:
    """'7 / 10 won (70 %)'."""
    return f"{wins} / {rounds} won" + (f" ({100 * wins / rounds:.0f} %)" if rounds else "")


def category_choices(generator, classifier, current) -> list[tuple[str, tuple[str, ...]]]:
    """The arena's category sets: all the generator draws (if the classifier knows them all), every preset
    that fits both models, and `current` if it is none of those. (label, names) pairs for a Dropdown."""
    drawn, known = list(generator.categories), set(classifier.categories)
    choices = []
    if all(n in known for n in drawn):
        choices.append((f"all {len(drawn)} of the generator", tuple(drawn)))
    for name, names in cats.PRESETS.items():
        if tuple(names) != tuple(drawn) and all(n in known and n in drawn for n in names):
            choices.append((f"{name} ({len(names)})", tuple(names)))
    if tuple(current) not in [value for _, value in choices]:
        choices.append((f"your {len(current)} categories", tuple(current)))
    return choices
