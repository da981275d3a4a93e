"""GeneratorPanel: pick a category, a seed and a count, and see the generator's drawings with the classifier's
verdict on each; the Variety choice picks the noise they are drawn from."""

from __future__ import annotations

import base64
import html

import ipywidgets as widgets
import numpy as np
import traitlets

from drawai import categories as cats
from drawai.checks import is_whole
from drawai.metrics import NAMED_NOISES, other_noises, own_noise
from drawai.widgets.common import _png, one_torch_thread


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
        if not is_whole(count, 1) or count > self.MAX_COUNT:
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
        noise = NAMED_NOISES[self.variety.value] if chosen else {}
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
        noise = NAMED_NOISES.get(self.variety.value) or own_noise(self.generator)
        return ", noise " + describe_noise(noise, "fitted to people's drawings of it")

    def _show(self, images, verdicts, message) -> None:
        self.images, self.verdicts, self.message = images, verdicts, message
        self.summary.value = f"<span>{html.escape(message)}</span>"
        self.grid.value = _drawing_grid(images, verdicts, self.category.value) if images is not None else ""


# The Variety choices besides the generator's own noise (metrics.NAMED_NOISES), as the menu names them.
VARIETY_LABELS = {"normal ±0.5": "clearer (±0.5)", "normal ±1": "varied (±1)",
                  "normal untruncated": "more varied (untruncated)", "fitted": "closest to people's (fitted)"}


def describe_noise(noise: dict, fitted: str = "fitted") -> str:
    """A NAMED_NOISES value in words: "truncated at ±1", "untruncated", "fitted", "fitted, truncated at ±1"."""
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
    options += [(VARIETY_LABELS[name], name) for name in other_noises(generator)]
    choice = widgets.Dropdown(options=options, value="model", description="Variety",
                              layout=widgets.Layout(width="260px"))
    choice.add_class("drawai-generate-variety")
    return choice


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
