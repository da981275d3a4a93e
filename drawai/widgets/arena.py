"""FightArena: the GAN draws, the classifier guesses, on a timer, with a running score (`drawai.fight` keeps the
rules)."""

from __future__ import annotations

import asyncio
import html

import ipywidgets as widgets
import numpy as np
import traitlets
from ipycanvas import Canvas

from drawai import categories as cats
from drawai import seeds
from drawai.bitmaps import SIZE
from drawai.checks import is_whole
from drawai.fight import FightError, Referee
from drawai.widgets.common import _png, one_torch_thread, redraw_on_client_ready


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
        if not is_whole(seed, 0):
            raise FightError(f"seed must be a non-negative integer, got {seed!r}")
        self.referee = Referee(generator, classifier, categories)  # every check, before a widget exists
        self.generator, self.classifier = generator, classifier
        self.history: list[dict] = []
        self._rng = seeds.rng(seed)
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
