"""The drawing pad in a real browser: JupyterLab on 127.0.0.1, notebooks/05_draw.ipynb run in it,
strokes drawn with Playwright's mouse on the pad's canvas, then the guesses, the 28x28 bitmap, Clear and
Save checked as a user sees them. A screenshot goes to test-artifacts/drawing_pad.png.

The notebook is run on a copy in a temporary folder with two parameters injected (papermill-style): the
dataset file goes to the temporary folder, and, until a trained model is in models/classifier-345, the
classifier is the template classifier of tests/test_widgets.py (real predictions, a tiny model).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

from drawai.paths import CLASSIFIER_DIR, ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "drawai-e2e"
HAVE_MODEL = importlib.util.find_spec("drawai.classifier") is not None and (CLASSIFIER_DIR / "manifest.json").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_notebook(work: Path) -> Path:
    nb = nbformat.read(ROOT / "notebooks" / "05_draw.ipynb", as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = f"dataset_path = {str(work / 'mine.npz')!r}\nmodel_path = {str(CLASSIFIER_DIR)!r}"
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    if not HAVE_MODEL:
        load = next(i for i, c in enumerate(nb.cells) if "Classifier.load" in c.source)
        nb.cells.insert(load + 1, nbformat.v4.new_code_cell(
            "from tests.test_widgets import TEMPLATES, TemplateClassifier\n\n"
            "clf, categories = TemplateClassifier(TEMPLATES), None"))
    path = work / "05_draw.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free loopback port, a known token, settings and workspaces of its own."""
    work = tmp_path_factory.mktemp("lab")
    prepare_notebook(work)
    # No news or update checks (nothing may reach past 127.0.0.1, and no toast over the notebook), and
    # no "Select Kernel" dialog: the notebook's own kernel starts.
    for plugin, values in {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "notebook-extension/tracker": {"autoStartDefaultKernel": True}}.items():
        file = work / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "IPYTHONDIR": str(work / "ipython")}
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
         f"--LabApp.user_settings_dir={work / 'settings'}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
         "--LabApp.extension_manager=readonly"]  # the default one asks PyPI
        + (["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(work / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def page(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.close()


INK_ON_CANVAS = """el => {  // dark pixels drawn on the pad's canvas (the kernel draws the strokes back)
    const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 128) n++; return n; }"""
BRIGHT_IN_IMAGE = """el => {  // bright pixels in the 28x28 bitmap image widget (ink is bright on black)
    if (!el.complete || !el.naturalWidth) return -1;
    const c = document.createElement('canvas'); c.width = el.naturalWidth; c.height = el.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(el, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++; return n; }"""


def test_draw_in_jupyterlab(lab, page):
    try:
        draw_in_jupyterlab(*lab, page)
    except BaseException:  # keep what the browser showed
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "drawing_pad_failure.png"))
        raise


def draw_in_jupyterlab(url, work, page):
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab/tree/05_draw.ipynb?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook")
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()  # the kernel is up
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()  # as a user would: Run > Run All Cells
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    canvas = page.locator("canvas.drawai-pad-canvas")
    canvas.scroll_into_view_if_needed()
    chart, message, bitmap = page.locator(".drawai-pad-chart"), page.locator(".drawai-pad-message"), \
        page.locator("img.drawai-pad-bitmap")
    page.wait_for_function("document.querySelector('.drawai-pad-message')?.textContent.includes('Draw something')")
    before = chart.inner_text()
    assert "%" not in before and canvas.evaluate(INK_ON_CANVAS) == 0

    # A circle, drawn like a hand: press, move in small steps, release.
    box = canvas.bounding_box()
    assert round(box["width"]) == 280 and round(box["height"]) == 280  # the fixed layout held
    cx, cy, r = box["x"] + 140, box["y"] + 140, 90
    angles = np.linspace(0, 2 * np.pi, 40)
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for i, a in enumerate(angles[1:]):
        page.mouse.move(cx + r * np.cos(a), cy + r * np.sin(a), steps=2)
        page.wait_for_timeout(15)
        if i == len(angles) // 2:  # half way round, pen still down: the guesses are already live
            page.wait_for_function("document.querySelector('.drawai-pad-chart').textContent.includes('%')")
    page.mouse.up()

    # Run the notebook's "Python access" cell again. The kernel handles messages in order, so its output
    # comes after every pointer event was handled, and it shows the pad's state from Python.
    access = page.locator(".jp-CodeCell").filter(has_text="strokes, bitmap")
    access.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    output = access.locator(".jp-OutputArea-output")
    output.filter(has_text="1 strokes, bitmap (28, 28), predictions [(").wait_for()
    page.wait_for_function(f"(() => {{ const el = document.querySelector('img.drawai-pad-bitmap');"
                           f" return ({BRIGHT_IN_IMAGE})(el) > 100; }})()")
    canvas.scroll_into_view_if_needed()
    after = chart.inner_text()
    assert after != before and after.count("%") == 5
    assert canvas.evaluate(INK_ON_CANVAS) > 3000  # the whole circle is on the canvas (~4,500 px of ink)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".drawai-pad").screenshot(path=str(ARTIFACTS / "drawing_pad.png"))
    page.screenshot(path=str(ARTIFACTS / "drawing_pad_lab.png"))
    assert bitmap.evaluate(BRIGHT_IN_IMAGE) > 100

    # Save it through the notebook's Save button, then Clear.
    label = "donut" if HAVE_MODEL else "circle"  # a circle; classic10 has no "circle"
    page.get_by_placeholder("what did you draw?").fill(label)
    page.get_by_role("button", name="Save drawing").click()
    page.wait_for_function("document.body.textContent.includes('Saved: 1 drawings')")
    from drawai.strokes import load_drawings

    saved = load_drawings(work / "mine.npz")
    assert saved.labels == [label] and len(saved.strokes[0]) == 1 and saved.bitmaps[0].max() > 0.5
    # Saving clears the pad: guesses and bitmap go, the canvas is blank again.
    page.wait_for_function("!document.querySelector('.drawai-pad-chart').textContent.includes('%')")
    assert "Draw something" in message.inner_text() and canvas.evaluate(INK_ON_CANVAS) == 0
