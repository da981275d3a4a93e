"""The dashboard that `make dashboard` serves with Voila (notebooks/dashboard.ipynb): three tabs built from
`drawai.widgets` — Draw (DrawingPad with live top-5), Generate (GeneratorPanel), Fight (FightArena).

It only loads models, it never trains: the classifier from DRAWAI_CLASSIFIER or models/classifier-345, the
generator from DRAWAI_GENERATOR or models/generator-345 (relative paths are taken from the project root).
A model that is missing or cannot be loaded turns the tabs that need it into a short message saying what
to do; the other tabs keep working. Visitors never see a traceback: the details go to the server log
(the stderr of the Voila process, which the kernel inherits), under the logger "drawai.dashboard".
"""

from __future__ import annotations

import html
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets

from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, ROOT

CLASSIFIER_ENV, GENERATOR_ENV = "DRAWAI_CLASSIFIER", "DRAWAI_GENERATOR"
MAX_SESSIONS_ENV = "DRAWAI_MAX_SESSIONS"
DEFAULT_MAX_SESSIONS = 8  # kernels at once: each holds torch (and, once Generate opens, TensorFlow)
TABS = ("Draw", "Generate", "Fight")
REMAKE = {
    "classifier": "python -m drawai.jobs train-classifier --publish models/classifier-345",
    "generator": "python -m drawai.jobs train-gan -p preset full --publish models/generator-345",
}


def server_log() -> logging.Logger:
    """The "drawai.dashboard" logger, writing to the server's terminal.

    In a kernel, sys.stderr is ipykernel's stream to the page (what a visitor would see); its fileno() is
    a copy of the kernel process's own stderr, which it inherited from the Voila server. Logging goes there.
    """
    log = logging.getLogger("drawai.dashboard")
    if not log.handlers:
        try:
            stream = open(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        except (AttributeError, OSError, ValueError):  # no file descriptor behind stderr
            stream = sys.__stderr__
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s %(name)s pid %(process)d] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # the root logger's handlers write to the page
    return log


@dataclass
class Loaded:
    """A model as the dashboard got it: the model, or None and `problem`, what the page says instead."""

    kind: str  # "classifier" or "generator"
    path: Path
    model: object | None
    problem: str = ""


def model_path(kind: str, given: str | os.PathLike | None = None) -> Path:
    """Where the `kind` model is: `given`, else its environment variable, else the shipped folder."""
    env, default = {"classifier": (CLASSIFIER_ENV, CLASSIFIER_DIR),
                    "generator": (GENERATOR_ENV, GENERATOR_DIR)}[kind]
    path = Path(os.path.expanduser(str(given or os.environ.get(env) or default)))
    return path if path.is_absolute() else ROOT / path


def load_or_notice(kind: str, given: str | os.PathLike | None = None) -> Loaded:
    """Load the classifier or the generator; never raises (a problem is reported, and logged in full)."""
    path = model_path(kind, given)
    env = CLASSIFIER_ENV if kind == "classifier" else GENERATOR_ENV
    log = server_log()
    if not path.exists():
        log.warning("no %s model at %s", kind, path)
        return Loaded(kind, path, None, f"There is no {kind} model at {_shown(path)}. Make one with "
                                        f"`{REMAKE[kind]}`, or point {env} to a model folder, and restart.")
    try:
        if kind == "classifier":
            from drawai.classifier import Classifier

            model = Classifier.load(path)
        else:
            from drawai import gan

            model = gan.load(path)
    except Exception:  # anything: a broken file must not take the page down
        log.exception("cannot load the %s model at %s", kind, path)
        return Loaded(kind, path, None, f"The {kind} model at {_shown(path)} could not be loaded: it is damaged "
                                        "or not a draw-ai model. The server log says why.")
    log.info("loaded the %s model at %s (%d categories)", kind, path, len(model.categories))
    return Loaded(kind, path, model)


def notice(text: str) -> widgets.HTML:
    """What a tab shows instead of a widget it cannot build (`command` in backquotes shows as code)."""
    shown = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    box = widgets.HTML(f"<div style='padding:12px 16px;border-left:4px solid #e0a000;background:#fff8e1;"
                       f"max-width:720px'>{shown}</div>")
    box.add_class("drawai-notice")
    return box


def build_tab(name: str, build, *needed: Loaded) -> widgets.Widget:
    """`build()` when every needed model loaded, else a notice naming what is missing; a tab whose widget
    fails to build shows a notice too (and the server log gets the traceback)."""
    problems = [m.problem for m in needed if m.model is None]
    if problems:
        return notice(f"The {name} tab needs {' and '.join('a ' + m.kind for m in needed)} model. "
                      + " ".join(problems))
    try:
        return build()
    except Exception:
        server_log().exception("cannot build the %s tab", name)
        return notice(f"The {name} tab could not start with these models. The server log says why.")


class Dashboard(widgets.VBox):
    """The three tabs. The classifier loads at once (Draw is the first thing a visitor sees, and it needs
    only torch); the generator loads when Generate or Fight is first opened, so a page is ready without
    waiting for TensorFlow, and a visitor who only draws never pays for it (time or memory).

    Python access: `dash.tabs`, `dash.classifier` and `dash.generator` (`Loaded`, the generator None until
    loaded), `dash.pad`, `dash.panel`, `dash.arena` (the tabs' widgets, None where a tab shows a notice).
    """

    def __init__(self, classifier_path=None, generator_path=None):
        from drawai.widgets import DrawingPad

        self.generator_path = generator_path
        self.classifier = load_or_notice("classifier", classifier_path)
        self.generator: Loaded | None = None
        self.pad = self.panel = self.arena = None
        self.slots = [widgets.VBox(layout=widgets.Layout(padding="8px 0")) for _ in TABS]
        self.slots[0].children = [build_tab("Draw", lambda: DrawingPad(self.classifier.model), self.classifier)]
        self.pad = _widget(self.slots[0])
        waiting = widgets.HTML("<div style='color:#555'>Loading the generator&hellip;</div>")
        self.slots[1].children = self.slots[2].children = [waiting]
        self.tabs = widgets.Tab(children=self.slots, titles=TABS)
        self.tabs.add_class("drawai-dashboard-tabs")
        self.tabs.observe(self._on_select, names="selected_index")
        self.about = widgets.HTML()
        super().__init__([self.tabs, self.about])
        self.add_class("drawai-dashboard")
        self._show_models()

    def load_generator(self) -> None:
        """Load the generator and build Generate and Fight (once; what opening either tab does)."""
        if self.generator is not None:
            return
        from drawai.widgets import FightArena, GeneratorPanel

        self.generator = gen = load_or_notice("generator", self.generator_path)
        clf = self.classifier
        # Without a classifier, Generate still draws (without verdicts); Fight needs both.
        self.slots[1].children = [build_tab("Generate", lambda: GeneratorPanel(gen.model, clf.model), gen)]
        self.slots[2].children = [build_tab("Fight", lambda: FightArena(gen.model, clf.model), gen, clf)]
        self.panel, self.arena = _widget(self.slots[1]), _widget(self.slots[2])
        if self.arena is not None:
            self.fight_note = widgets.HTML()
            self.slots[2].children += (self.fight_note,)
            self._rounds_at_start = 0
            self.arena.toggle.observe(self._on_fight_toggle, names="value")
            self.arena.observe(self._on_fight_round, names="rounds")
        self._show_models()

    # A running fight sends messages every round, and a kernel that sends messages never counts as idle,
    # so the culler would never end the kernel of a page that vanished mid-fight (browser crash, lost
    # network): the timer stops by itself after MAX_FIGHT_ROUNDS rounds.
    MAX_FIGHT_ROUNDS = 600  # 10 minutes at the default second a round

    def _on_fight_toggle(self, change) -> None:
        if change["new"]:
            self._rounds_at_start = self.arena.rounds
            self.fight_note.value = ""

    def _on_fight_round(self, change) -> None:
        if self.arena.running and change["new"] - self._rounds_at_start >= self.MAX_FIGHT_ROUNDS:
            self.arena.stop()
            self.fight_note.value = (f"<span style='color:#555'>The fight pauses after {self.MAX_FIGHT_ROUNDS} "
                                     "rounds in a row: press Start to go on.</span>")

    def _on_select(self, change) -> None:
        if change["new"] in (1, 2):
            self.load_generator()

    def _show_models(self) -> None:
        parts = []
        for kind, m in (("classifier", self.classifier), ("generator", self.generator)):
            if m is None:
                parts.append(f"{kind}: loads when Generate or Fight is opened")
            else:
                parts.append(f"{kind}: {html.escape(_shown(m.path))} " + (
                    f"({len(m.model.categories)} categories)" if m.model is not None else "(not loaded)"))
        self.about.value = f"<span style='color:#666;font-size:12px'>{' · '.join(parts)}</span>"


def dashboard(classifier_path: str | os.PathLike | None = None,
              generator_path: str | os.PathLike | None = None) -> Dashboard:
    """The dashboard with the models at these paths (None: the environment variables, else the shipped ones)."""
    return Dashboard(classifier_path, generator_path)


def _widget(slot: widgets.Box):
    """The tab's widget, None when the tab shows a notice."""
    child = slot.children[0] if slot.children else None
    return None if child is None or "drawai-notice" in child._dom_classes else child


def max_sessions() -> int:
    """How many kernels (open pages) the server runs at once: $DRAWAI_MAX_SESSIONS, 0 for no limit."""
    text = os.environ.get(MAX_SESSIONS_ENV, str(DEFAULT_MAX_SESSIONS)).strip()
    if not text.isdigit():
        raise ValueError(f"{MAX_SESSIONS_ENV} must be a whole number (0 for no limit), got {text!r}")
    return int(text)


def prelaunch(request, notebook, cwd):
    """Voila's prelaunch hook (set in voila.py): runs on every page request, before its kernel starts.

    - Sets the `_xsrf` cookie. Voila's page asks the server to shut its kernel down when it unloads (reload,
      tab closed) with a POST that must carry that cookie's value; Voila never sets the cookie itself, so
      without this every such POST is refused (403) and every reload leaves a kernel running.
    - Caps the sessions: with `max_sessions()` kernels running, the visitor gets "busy" (HTTP 503) instead
      of one more kernel. Kernels of pages that vanished without unloading count until culled (voila.py).
    """
    from tornado.web import HTTPError

    request.xsrf_token  # noqa: B018 -- reading it sets the cookie on this response
    limit, running = max_sessions(), len(request.kernel_manager.list_kernel_ids())
    if limit and running >= limit:
        server_log().warning("refused a session: %d kernels running, the limit (%s) is %d",
                             running, MAX_SESSIONS_ENV, limit)
        raise HTTPError(503, reason="The dashboard is busy: all its sessions are in use. Try again in a while.")
    return None  # the notebook as it is


def _shown(path: Path) -> str:
    """A path as a visitor may see it: relative to the project when inside it (no home folders on show)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return path.name
