"""GeneratorPanel and the dashboard driven from Python: real drawings judged by the shipped classifier,
models that are missing or damaged, and the generator loaded only when its tabs are opened.
(tests/e2e/test_dashboard.py serves the same with Voila and drives it in chromium.)"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drawai import bitmaps, data
from drawai import dashboard as dash
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, ROOT
from drawai.widgets import DrawingPad, FightArena, GeneratorPanel
from tests.test_widgets import TRIANGLE, draw_with_mouse


class SampleGenerator:
    """A "generator" that draws real test drawings of the requested category (seeded choice): the GAN's
    API without training one. The shipped classifier recognises most of them."""

    def __init__(self, categories="classic10"):
        _, self.test = data.train_test(data.load_sample(categories))
        self.categories = list(self.test.categories)
        self.calls = 0

    def generate(self, labels, n=1, seed=None):
        self.calls += 1
        rng = np.random.default_rng(seed)
        pick = []
        for label in [labels] if isinstance(labels, str) else labels:  # one name or a list, like the GAN
            pool = np.flatnonzero(self.test.labels == self.categories.index(label))
            pick += list(rng.choice(pool, size=n, replace=n > len(pool)))
        return bitmaps.to_canonical(self.test.images[pick])


class Broken(SampleGenerator):
    def generate(self, label, n=1, seed=None):
        raise RuntimeError("the weights are gone")


def grid_images(panel) -> list[np.ndarray]:
    """The PNGs in the grid, decoded as a browser would."""
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))))
            for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", panel.grid.value)]


def test_generate_shows_the_drawings_and_the_classifier_verdict_on_each(shipped):
    gen = SampleGenerator()
    panel = GeneratorPanel(gen, shipped, count=8, seed=3)
    assert panel.images is None and panel.grid.value == ""
    panel.category.value = "house"
    panel.button.click()
    assert gen.calls == 1 and panel.images.shape == (8, 28, 28)
    shown = grid_images(panel)
    assert len(shown) == 8
    for png, image in zip(shown, panel.images, strict=True):  # what the page shows is what was judged
        assert png.shape == (84, 84)
        np.testing.assert_array_equal(png[::3, ::3], np.rint(image * 255).astype(np.uint8))
    probs = shipped.probabilities(panel.images, canonical=True)
    assert panel.verdicts == [(shipped.categories[j], pytest.approx(float(probs[i, j]))) for i, j in
                              enumerate(probs.argmax(1))]
    right = sum(g == "house" for g, _ in panel.verdicts)
    assert right >= 4  # real house drawings: the classifier (55.7 % top-1 over 345) gets most
    assert panel.grid.value.count("drawai-verdict right") == right
    assert panel.grid.value.count("drawai-verdict wrong") == 8 - right
    assert f"{right} of 8 drawings of house recognised" in panel.message
    assert panel.summary.value.count("recognised") == 1


def test_the_same_seed_gives_the_same_drawings_and_another_seed_others(shipped):
    panel = GeneratorPanel(SampleGenerator(), shipped, count=6, seed=1)
    panel.generate()
    first = panel.images.copy()
    panel.generate()
    np.testing.assert_array_equal(panel.images, first)
    panel.seed.value = 2
    panel.generate()
    assert not np.array_equal(panel.images, first)
    panel.count.value = 3
    panel.generate()
    assert len(panel.images) == 3 and len(grid_images(panel)) == 3


def test_without_a_classifier_the_drawings_show_without_verdicts():
    panel = GeneratorPanel(SampleGenerator(), count=4)
    panel.generate()
    assert len(grid_images(panel)) == 4 and panel.verdicts == []
    assert "drawai-verdict" not in panel.grid.value and "no classifier" in panel.message


def test_failures_are_reported_in_the_panel(shipped):
    panel = GeneratorPanel(Broken(), shipped)
    panel.generate()
    assert panel.images is None and panel.grid.value == ""
    assert "The generator failed: RuntimeError: the weights are gone" in panel.message


class NoisyGenerator(SampleGenerator):
    """SampleGenerator with a GAN's noise setting: records the truncation each call asked for."""

    def __init__(self, truncation=0.5):
        super().__init__()
        self.truncation, self.asked = truncation, []

    def generate(self, labels, n=1, seed=None, **noise):
        self.asked.append(noise)
        return super().generate(labels, n, seed)


def test_variety_picks_the_noise_truncation_of_a_gan(shipped):
    assert GeneratorPanel(SampleGenerator(), shipped).variety is None  # a generator that draws one way
    gen = NoisyGenerator()
    panel = GeneratorPanel(gen, shipped, count=2)
    assert [value for _, value in panel.variety.options] == ["model", "normal ±1", "normal untruncated"]
    assert panel.variety.options[0][0] == "as trained (±0.5)"
    assert panel.variety.value == "model" and panel.variety in panel.children[1].children
    panel.generate()
    panel.variety.value = "normal ±1"
    panel.generate()
    assert "noise truncated at ±1)" in panel.message
    panel.variety.value = "normal untruncated"
    panel.generate()
    assert "noise untruncated)" in panel.message
    # the model's own: no argument; the others name their noise, whatever the model's own is
    assert gen.asked == [{}, {"noise": "normal", "truncation": 1.0}, {"noise": "normal", "truncation": None}]
    panel.variety.value = "model"
    panel.generate()
    assert "noise truncated at ±0.5)" in panel.message
    # A model drawing at +-1 already, or untruncated: no choice offered twice.
    def offered(generator):
        return [v for _, v in GeneratorPanel(generator, shipped).variety.options]

    assert offered(NoisyGenerator(1.0)) == ["model", "normal ±0.5", "normal untruncated"]
    assert offered(NoisyGenerator(None)) == ["model", "normal ±0.5", "normal ±1"]
    assert offered(NoisyGenerator(0.7)) == ["model", "normal ±0.5", "normal ±1", "normal untruncated"]


def test_variety_offers_the_fitted_noise_of_a_gan_that_has_it(shipped):
    gen = NoisyGenerator(1.0)
    gen.noises = ("normal", "fitted")
    panel = GeneratorPanel(gen, shipped, count=2)
    assert [v for _, v in panel.variety.options] == ["model", "normal ±0.5", "normal untruncated", "fitted"]
    panel.variety.value = "fitted"
    panel.generate()
    assert gen.asked == [{"noise": "fitted", "truncation": None}]
    assert "noise fitted to people's drawings of it)" in panel.message
    # A GAN that draws from its fitted noise by default: that is its own, and N(0, 1) at each cut is offered.
    gen.noise, gen.truncation = "fitted", None
    panel = GeneratorPanel(gen, shipped, count=2)
    assert panel.variety.options[0][0] == "as trained (fitted)"
    assert [v for _, v in panel.variety.options] == ["model", "normal ±0.5", "normal ±1", "normal untruncated"]
    panel.generate()
    assert gen.asked[-1] == {} and "noise fitted to people's drawings of it)" in panel.message
    gen.truncation = 1.0
    assert GeneratorPanel(gen, shipped).variety.options[0][0] == "as trained (fitted, ±1)"
    assert [v for _, v in GeneratorPanel(gen, shipped).variety.options] == [
        "model", "normal ±0.5", "normal ±1", "normal untruncated", "fitted"]


def test_the_shipped_generator_shows_the_variety_of_real_doodles_by_default():
    """Eight fish at the Generate tab's default noise (the fitted one) lie apart about as far as real fish do (a
    template would not), and the N(0, 1) Variety choices move that spread the way their names say."""
    from drawai import bitmaps, data, gan

    panel = GeneratorPanel(gan.load(GENERATOR_DIR), count=8, seed=5, categories=["fish"])
    assert panel.variety.options[0][0] == "as trained (fitted)"

    def spread(x) -> float:  # mean distance of each drawing to the others
        x = np.asarray(x).reshape(len(x), -1)
        return float(np.mean([np.linalg.norm(x[i] - x[j]) for i in range(len(x)) for j in range(i)]))

    drawn = {}
    for key in ("normal ±0.5", "normal ±1", "normal untruncated", "model"):
        panel.variety.value = key
        panel.generate()
        drawn[key] = spread(panel.images)
    real = spread(bitmaps.to_canonical(data.load_sample(["fish"]).images))
    assert drawn["normal ±0.5"] < drawn["normal ±1"] < min(drawn["normal untruncated"], drawn["model"])
    assert drawn["model"] > 0.75 * real, (drawn, real)


def test_bad_arguments_are_refused_with_a_clear_error(shipped):
    gen = SampleGenerator()
    with pytest.raises(ValueError, match="does not draw.*'cat'"):
        GeneratorPanel(gen, shipped, categories=["house", "cat"])
    with pytest.raises(ValueError, match="count must be"):
        GeneratorPanel(gen, shipped, count=0)
    narrow = SampleGenerator()
    narrow.categories = ["house", "nonsense"]  # a category the classifier has never seen
    with pytest.raises(ValueError, match="classifier does not know"):
        GeneratorPanel(narrow, shipped)
    panel = GeneratorPanel(gen, shipped, categories=["house", "apple"])
    assert list(panel.category.options) == ["house", "apple"]


# --- loading models for the dashboard ---------------------------------------------------------------------


@pytest.fixture
def log_records():
    """What the dashboard writes to the server log."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = dash.server_log()
    log.addHandler(handler)
    yield records
    log.removeHandler(handler)


def test_model_paths_come_from_the_argument_then_the_environment_then_models(monkeypatch, tmp_path):
    monkeypatch.delenv(dash.CLASSIFIER_ENV, raising=False)
    assert dash.model_path("classifier") == CLASSIFIER_DIR
    monkeypatch.setenv(dash.CLASSIFIER_ENV, "runs/x/model")
    assert dash.model_path("classifier") == ROOT / "runs" / "x" / "model"  # relative to the project
    assert dash.model_path("classifier", tmp_path) == tmp_path
    monkeypatch.setenv(dash.GENERATOR_ENV, str(tmp_path))
    assert dash.model_path("generator") == tmp_path


def test_a_missing_model_gives_a_message_that_says_what_to_do(tmp_path, log_records):
    got = dash.load_or_notice("generator", tmp_path / "generator-345")
    assert got.model is None
    assert "no generator model at generator-345" in got.problem  # no temporary folders on show
    assert "DRAWAI_GENERATOR" in got.problem and "train-gan" in got.problem
    assert any("no generator model" in r.getMessage() for r in log_records)


def test_a_damaged_model_gives_a_message_and_the_details_go_to_the_log(tmp_path, log_records):
    broken = tmp_path / "classifier"
    shutil.copytree(CLASSIFIER_DIR, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    got = dash.load_or_notice("classifier", broken)
    assert got.model is None and "could not be loaded" in got.problem and "server log" in got.problem
    assert "safetensors" not in got.problem  # the why is for the log, not the visitor
    record = next(r for r in log_records if "cannot load the classifier" in r.getMessage())
    assert record.exc_info and "safetensors" in str(record.exc_info[1])
    (broken / "manifest.json").write_text("{")
    assert "could not be loaded" in dash.load_or_notice("classifier", broken).problem


def test_the_server_log_writes_to_the_process_stderr(capfd):
    log = logging.getLogger("drawai.dashboard")
    for h in list(log.handlers):
        log.removeHandler(h)  # a fresh handler, made while capfd holds fd 2
    try:
        dash.server_log().warning("hello from the dashboard")
        assert "hello from the dashboard" in capfd.readouterr().err
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)


def test_dashboard_loads_the_generator_when_its_tabs_are_opened(monkeypatch, tmp_path):
    generator = SampleGenerator()
    loads = []

    def load(kind, given=None):
        if kind == "generator":
            loads.append(given)
            return dash.Loaded("generator", tmp_path / "generator", generator)
        return real_load(kind, given)

    real_load = dash.load_or_notice
    monkeypatch.setattr(dash, "load_or_notice", load)
    board = dash.dashboard()
    assert isinstance(board.pad, DrawingPad) and board.generator is None and loads == []
    assert list(board.tabs.titles) == ["Draw", "Generate", "Fight"]
    draw_with_mouse(board.pad, TRIANGLE)
    assert len(board.pad.predictions) == 5
    board.tabs.selected_index = 1
    assert loads == [None] and isinstance(board.panel, GeneratorPanel)
    board.panel.button.click()
    assert len(board.panel.verdicts) == 8
    board.tabs.selected_index = 2
    board.tabs.selected_index = 1
    assert loads == [None]  # once
    assert "10 categories" in board.about.value and "345 categories" in board.about.value
    # The Fight tab: the arena on the same two models, on the generator's categories.
    assert isinstance(board.arena, FightArena) and board.arena.labels == generator.categories
    result = board.arena.play_round()
    assert board.arena.rounds == 1 and result["label"] in generator.categories


def test_a_running_fight_pauses_by_itself_so_a_lost_page_cannot_keep_its_kernel_busy(monkeypatch, shipped, tmp_path):
    generator = SampleGenerator()
    monkeypatch.setattr(dash, "load_or_notice", lambda kind, given=None: dash.Loaded(
        kind, tmp_path / kind, generator if kind == "generator" else shipped))
    monkeypatch.setattr(dash.Dashboard, "MAX_FIGHT_ROUNDS", 3)
    board = dash.dashboard()
    board.load_generator()
    arena = board.arena

    async def fight():
        arena.speed.value = 0.1
        arena.toggle.value = True  # what the Start button does
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not arena.running:
                break

    asyncio.run(fight())
    assert arena.rounds == 3 and not arena.running and arena.toggle.value is False
    assert "pauses after 3 rounds" in board.fight_note.value
    asyncio.run(fight())  # Start again: three more, then a pause again
    assert arena.rounds == 6 and not arena.running


def test_dashboard_with_no_models_shows_messages_in_every_tab(tmp_path):
    board = dash.dashboard(tmp_path / "none", tmp_path / "nothing")
    assert board.pad is None
    notice = board.slots[0].children[0]
    assert "drawai-notice" in notice._dom_classes and "no classifier model" in notice.value
    assert "<code>python -m drawai.jobs train-classifier --publish models/classifier-345</code>" in notice.value
    board.tabs.selected_index = 2
    assert board.panel is None and board.arena is None
    assert "no generator model" in board.slots[1].children[0].value
    fight = board.slots[2].children[0].value
    assert "no generator model" in fight and "no classifier model" in fight


def test_a_tab_whose_widget_fails_to_build_shows_a_notice(log_records):
    def fail():
        raise RuntimeError("boom")

    ok = dash.Loaded("classifier", Path("x"), object())
    shown = dash.build_tab("Draw", fail, ok)
    assert "could not start" in shown.value and "boom" not in shown.value
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in log_records)


def test_the_notebook_is_thin_and_only_calls_the_package():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "dashboard.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert "dashboard(classifier_path, generator_path)" in code[-1].source
    assert sum(len(c.source.splitlines()) for c in code) <= 8


def voila_config():
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("voila.py", path=str(ROOT / "config")).load_config()


def test_voila_config_keeps_tracebacks_and_code_away_from_visitors_and_culls_lost_sessions():
    config = voila_config()
    assert config.VoilaConfiguration.show_tracebacks is False and config.VoilaConfiguration.strip_sources is True
    assert config.VoilaConfiguration.prelaunch_hook is dash.prelaunch
    assert "preheat_kernel" not in config.VoilaConfiguration  # Voila refuses preheating with a prelaunch hook
    assert config.MappingKernelManager.cull_idle_timeout > 0 and config.MappingKernelManager.cull_connected is False
    assert "--Voila.config_file_paths=config" in (ROOT / "Makefile").read_text()


class FakeRequest:
    """What the prelaunch hook uses of Voila's request handler."""

    def __init__(self, kernels: int):
        self.kernel_manager = type("KM", (), {"list_kernel_ids": lambda _: [f"k{i}" for i in range(kernels)]})()
        self.cookies = {}

    @property
    def xsrf_token(self):  # tornado sets the cookie when the token is read
        self.cookies["_xsrf"] = "token"
        return b"token"


def test_prelaunch_sets_the_xsrf_cookie_and_caps_the_sessions(monkeypatch, log_records):
    from tornado.web import HTTPError

    monkeypatch.setenv(dash.MAX_SESSIONS_ENV, "3")
    request = FakeRequest(kernels=2)
    assert dash.prelaunch(request, notebook=None, cwd="notebooks") is None
    assert "_xsrf" in request.cookies  # the page's shutdown-on-unload request needs it
    with pytest.raises(HTTPError) as refused:
        dash.prelaunch(FakeRequest(kernels=3), notebook=None, cwd="notebooks")
    assert refused.value.status_code == 503 and "busy" in refused.value.reason
    assert any("refused a session" in r.getMessage() for r in log_records)
    monkeypatch.setenv(dash.MAX_SESSIONS_ENV, "0")  # no limit
    assert dash.prelaunch(FakeRequest(kernels=100), notebook=None, cwd="notebooks") is None
    monkeypatch.delenv(dash.MAX_SESSIONS_ENV)
    assert dash.max_sessions() == dash.DEFAULT_MAX_SESSIONS
    monkeypatch.setenv(dash.MAX_SESSIONS_ENV, "many")
    with pytest.raises(ValueError, match="DRAWAI_MAX_SESSIONS must be a whole number"):
        voila_config()  # the server stops at start


def test_the_draw_tab_explains_with_the_shipped_classifier(monkeypatch):
    from drawai import explain

    train, _ = data.train_test(data.load_sample("all"))
    first = np.unique(train.labels, return_index=True)[1]  # one training drawing a category: no 27,600 to index
    fake = explain.Index(np.eye(345, dtype=np.float32), train.labels[first], train.images[first])
    monkeypatch.setattr(explain, "nearest_index", lambda clf, folder=None: fake)
    monkeypatch.setattr(explain, "has_index", lambda clf, folder=None: True)
    d = dash.Dashboard(CLASSIFIER_DIR)
    assert not d.pad.explain_button.disabled
    draw_with_mouse(d.pad, TRIANGLE)
    d.pad.explain_button.value = True
    e = d.pad.explanation
    assert e["label"] == d.pad.predictions[0][0] and e["saliency"].shape == (28, 28)
    assert list(e["nearest"]) == [label for label, _ in d.pad.predictions[:2]]
    assert d.pad.neighbours.value.count("<img") == 2 and "Nearest training drawings of" in d.pad.neighbours.value
