"""The dashboard as a visitor gets it: `make dashboard`'s Voila (config/voila.py) on a free
127.0.0.1 port, opened in Debian's chromium by Playwright.

One server is shared by most tests: the shipped classifier, and DRAWAI_GENERATOR pointing to a tiny GAN
trained here (classic10, 2 epochs, narrow: seconds; it draws blobs, but real ones through the real code).
Screenshots of each tab go to test-artifacts/dashboard-<tab>.png. A second server, started with a damaged
classifier and no generator, must show messages and no traceback. Every server is stopped with SIGTERM
and must exit and take its kernels with it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest

from drawai.paths import CLASSIFIER_DIR, ROOT
from tests.e2e.test_drawing_pad import INK_ON_CANVAS, free_port

# Slow: a cold kernel per page (torch, then TensorFlow on Generate) on 2 cores; 4 tests, one shared server,
# about 4 minutes on a loaded 2-core machine. They are the dashboard's acceptance test.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
VOILA = Path(sys.executable).with_name("voila")
TIMEOUT_MS = 120_000  # a cold kernel imports torch (and, on Generate, TensorFlow) on 2 shared cores


def kernels(server: subprocess.Popen) -> list[psutil.Process]:
    """The server's kernel processes."""
    try:
        children = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _is_kernel(p)]


def _is_kernel(p: psutil.Process) -> bool:
    try:
        return "ipykernel_launcher" in " ".join(p.cmdline())
    except psutil.Error:
        return False


@contextmanager
def voila(work: Path, env: dict):
    """Voila as `make dashboard` starts it (config/voila.py), on a free loopback port, its log in `work`.

    Yields (url, process, log path). On exit: SIGTERM, wait, and the check that no kernel outlived it.
    """
    port = free_port()
    log_path = work / f"voila-{port}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "IPYTHONDIR": str(work / "ipython"), **env}
    with open(log_path, "w") as log:
        server = subprocess.Popen([str(VOILA), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
                                   "--Voila.config_file_paths=config", "notebooks/dashboard.ipynb"],
                                  cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        seen: set[int] = set()
        try:
            deadline = time.monotonic() + 60
            while True:  # listening (not a page request: that would start a kernel)
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"Voila did not start:\n{log_path.read_text()[-3000:]}")
                    time.sleep(0.3)
            yield url, server, log_path, seen
        finally:
            seen.update(k.pid for k in kernels(server))
            server.terminate()
            try:
                code = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                pytest.fail(f"Voila did not stop within 30 s of SIGTERM:\n{log_path.read_text()[-3000:]}")
            # A kernel that was shutting down (its page had just left) may take a moment more to exit.
            alive = [psutil.Process(pid) for pid in seen if psutil.pid_exists(pid)]
            _, alive = psutil.wait_procs([p for p in alive if _is_kernel(p)], timeout=15)
            orphans = [p.pid for p in alive]
            for p in alive:
                p.kill()
            assert not orphans, f"kernels left running after Voila stopped: {orphans}"
            assert code in (0, -15), f"Voila exited with {code}:\n{log_path.read_text()[-3000:]}"


@pytest.fixture(scope="session")
def tiny_gan(tmp_path_factory):
    """A conditional GAN on classic10, 2 epochs at width 16 (about 10 CPU seconds), saved as a model folder."""
    from drawai import data, gan

    config = gan.GANConfig.from_preset("demo", epochs=2, width=16)
    model = gan.train(data.train_test(data.load_sample("classic10"))[0], config, verbose=0)
    return gan.save(model, tmp_path_factory.mktemp("gan") / "generator", config=config)


@pytest.fixture(scope="module")
def server(tiny_gan, tmp_path_factory):
    work = tmp_path_factory.mktemp("voila")
    with voila(work, {"DRAWAI_GENERATOR": str(tiny_gan)}) as running:
        yield running


@contextmanager
def visitor(browser, name: str):
    """A browser context of its own (a separate session); a screenshot of the page if the test fails."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}-failure.png"))
        raise
    finally:
        page.goto("about:blank")  # leaving the page as a visitor does: it asks the server to end its kernel
        context.close()


def open_dashboard(page, url: str, wait: bool = True):
    page.goto(url, wait_until="commit")
    if wait:
        page.locator("canvas.drawai-pad-canvas").wait_for(state="visible")


def open_tab(page, title: str):
    page.locator(".drawai-dashboard-tabs .lm-TabBar-tab", has_text=title).click()


def draw_circle(page, steps: int = 30):
    """Press, move round in small steps, release: the pad's guesses come from the strokes the kernel got."""
    canvas = page.locator("canvas.drawai-pad-canvas")
    box = canvas.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] / 3
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for a in np.linspace(0, 2 * np.pi, steps)[1:]:
        page.mouse.move(cx + r * np.cos(a), cy + r * np.sin(a), steps=2)
        page.wait_for_timeout(10)
    page.mouse.up()
    # The kernel draws the strokes back onto the canvas as it handles the pointer events; on a busy machine
    # it is behind the mouse, so wait for the whole circle (~3,000 px of ink) rather than the first guesses.
    page.wait_for_function(f"(() => {{ const el = document.querySelector('canvas.drawai-pad-canvas');"
                           f" return ({INK_ON_CANVAS})(el) > 2000; }})()")
    chart = page.locator(".drawai-pad-chart .drawai-guess")
    chart.nth(4).wait_for()  # five guesses, each a category and a percentage
    assert chart.count() == 5 and "%" in chart.first.inner_text()
    return [chart.nth(i).inner_text() for i in range(5)]


def generate(page, category: str, count: int = 8) -> int:
    """On the Generate tab: pick `category`, press Generate, wait for `count` drawings of it (the panel
    shows 8 unless its count box was changed); returns how many the grid shows."""
    open_tab(page, "Generate")
    button = page.locator(".drawai-generate-button")
    button.wait_for(state="visible")  # the generator loads when the tab is first opened
    page.locator(".drawai-generate-category select").select_option(category)
    button.click()
    page.wait_for_function(f"""document.querySelector('.drawai-generate-summary')?.textContent
                              .includes('of {count} drawings of {category}')""")
    images = page.locator(".drawai-generate-grid img")
    page.wait_for_function("""(() => { const imgs = [...document.querySelectorAll('.drawai-generate-grid img')];
                                       return imgs.length && imgs.every(e => e.complete && e.naturalWidth === 84);
                                     })()""")  # every drawing decoded (data: URLs decode asynchronously)
    assert page.locator(".drawai-generate-grid figcaption").count() == images.count()  # a verdict on each
    return images.count()


SCORE = """(() => { const m = document.querySelector('.drawai-fight-score')?.textContent.match(/(\\d+) \\/ (\\d+) won/);
                   return m ? [Number(m[1]), Number(m[2])] : null; })()"""  # [wins, rounds]
PAINTED = """el => { const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""


def start_fight(page):
    """On the Fight tab: press Start (the toggle) with the score at zero."""
    open_tab(page, "Fight")
    toggle = page.locator(".drawai-fight-toggle")
    toggle.wait_for(state="visible")
    wins, rounds = page.evaluate(SCORE)
    assert wins <= rounds
    toggle.click()
    return rounds


def wait_rounds(page, at_least: int):
    page.wait_for_function(f"(() => {{ const s = {SCORE}; return s && s[1] >= {at_least}; }})()")


def stop_fight(page) -> tuple[int, int]:
    """Press Stop; returns the score, after checking it no longer moves."""
    toggle = page.locator(".drawai-fight-toggle")
    toggle.click()
    page.wait_for_function("document.querySelector('.drawai-fight-toggle').textContent.includes('Start')")
    stopped = page.evaluate(SCORE)
    page.wait_for_timeout(2500)  # more than two rounds at the default second a round
    assert page.evaluate(SCORE) == stopped
    return tuple(stopped)


def test_draw_and_generate_in_the_dashboard(server, browser):
    url, process, log_path, _ = server
    with visitor(browser, "draw") as page:
        start = time.perf_counter()
        open_dashboard(page, url)
        print(f"page load to canvas: {time.perf_counter() - start:.1f} s")
        # What a visitor's browser got holds no notebook code, and no traceback.
        assert "from drawai.dashboard import" not in page.content()
        guesses = draw_circle(page)
        assert all(g.split()[-1].endswith("%") for g in guesses)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".drawai-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-draw.png"))

        assert generate(page, "house") == 8
        assert "10 categories" in page.locator(".drawai-dashboard").inner_text()  # the tiny GAN is loaded
        page.locator(".drawai-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-generate.png"))
        # Another count and category: the grid follows.
        page.locator(".drawai-generate-seed input").fill("7")
        page.locator(".drawai-generate-seed input").press("Enter")
        assert generate(page, "apple") == 8
        # Variety: the full normal noise instead of the model's own truncation, said in the summary.
        page.locator(".drawai-generate-variety select").select_option(label="more varied (untruncated)")
        page.locator(".drawai-generate-button").click()
        page.wait_for_function("""document.querySelector('.drawai-generate-summary')?.textContent
                                  .includes('noise untruncated')""")
        assert page.locator(".drawai-generate-grid img").count() == 8

        # Fight: Start, the score moves round by round, Stop, it stays.
        before = start_fight(page)
        wait_rounds(page, before + 3)
        canvas = page.locator("canvas.drawai-fight-canvas")
        assert canvas.evaluate(PAINTED) == 224 * 224  # the arena's canvas shows the drawings (not blank)
        # The strip of last rounds, green or red: its own widget, whose update may reach the page after the score's.
        strip = ".drawai-fight-history .drawai-fight-win, .drawai-fight-history .drawai-fight-lose"
        page.wait_for_function(f"document.querySelectorAll({strip!r}).length >= 3")
        page.locator(".drawai-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-fight.png"))
        wins, rounds = stop_fight(page)
        assert rounds >= before + 3 and 0 <= wins <= rounds
        assert "Traceback" not in page.content()


def test_explain_in_the_draw_tab(server, browser):
    url, *_ = server
    with visitor(browser, "explain") as page:
        open_dashboard(page, url)
        draw_circle(page)
        page.locator(".drawai-pad-explain").click()
        # The first use may index the model's training drawings: about a minute on 2 cores, two on busy ones.
        neighbours = page.locator(".drawai-pad-neighbours img")
        neighbours.nth(7).wait_for(timeout=300_000)
        assert neighbours.count() == 8
        assert page.locator(".drawai-pad-neighbours").inner_text().count("Nearest training drawings of") == 2
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".drawai-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-explain.png"))
        assert "Traceback" not in page.content()


def test_three_sessions_at_once(server, browser):
    url, process, *_ = server
    with visitor(browser, "session1") as a, visitor(browser, "session2") as b, visitor(browser, "session3") as c:
        pages = [a, b, c]
        for page in pages:  # all three load at the same time: three kernels
            open_dashboard(page, url, wait=False)
        for page in pages:
            page.locator("canvas.drawai-pad-canvas").wait_for(state="visible")
        assert len(kernels(process)) >= 3
        for page in pages:
            draw_circle(page)
        for page, category in zip(pages, ["mug", "door", "cloud"], strict=True):
            assert generate(page, category) == 8
        starts = [start_fight(page) for page in pages]  # three fights at once
        for page, start in zip(pages, starts, strict=True):
            wait_rounds(page, start + 2)
        for page in pages:
            stop_fight(page)
        # Each session has its own state: the first page's drawing is not on the others after a Clear.
        a.locator(".drawai-dashboard-tabs .lm-TabBar-tab", has_text="Draw").click()
        a.get_by_role("button", name="Clear").click()
        a.wait_for_function("!document.querySelector('.drawai-pad-chart').textContent.includes('%')")
        b.locator(".drawai-dashboard-tabs .lm-TabBar-tab", has_text="Draw").click()
        assert b.locator(".drawai-pad-chart .drawai-guess").count() == 5


def test_rapid_clicks_and_a_reload_leave_the_server_healthy(server, browser):
    url, process, log_path, seen = server
    with visitor(browser, "rapid") as page:
        open_dashboard(page, url)
        before = {k.pid for k in kernels(process)}
        seen.update(before)
        assert generate(page, "bicycle") == 8
        button = page.locator(".drawai-generate-button")
        for _ in range(25):  # faster than a kernel answers
            button.click(delay=0, no_wait_after=True)
        page.locator(".drawai-generate-count input").fill("3")
        page.locator(".drawai-generate-count input").press("Enter")
        assert generate(page, "bicycle", count=3) == 3
        start = start_fight(page)
        toggle = page.locator(".drawai-fight-toggle")
        for _ in range(14):  # stop, start, stop, ... faster than the rounds
            toggle.click(delay=0, no_wait_after=True)
        page.wait_for_timeout(1000)
        if "Start" in toggle.inner_text():  # the kernel saw the clicks in an order that left it stopped
            toggle.click()
        wait_rounds(page, start + 2)
        page.reload(wait_until="commit")  # mid-fight, and maybe with clicks still queued in the kernel
        page.locator("canvas.drawai-pad-canvas").wait_for(state="visible")
        draw_circle(page)
    assert process.poll() is None
    with visitor(browser, "after") as page:  # a new visitor still gets a working dashboard
        open_dashboard(page, url)
        draw_circle(page)
        assert generate(page, "donut") == 8
    # Pages that went away took their kernels with them (Voila shuts a kernel down when its page unloads),
    # the one reloaded mid-fight included.
    deadline = time.monotonic() + 30
    while len(kernels(process)) > len(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(kernels(process)) <= len(before)


def test_damaged_and_missing_models_show_a_message_not_a_traceback_and_sessions_are_capped(browser, tmp_path):
    damaged = tmp_path / "classifier"
    shutil.copytree(CLASSIFIER_DIR, damaged)
    (damaged / "model.safetensors").write_bytes(b"\0" * 100)  # truncated weights
    env = {"DRAWAI_CLASSIFIER": str(damaged), "DRAWAI_GENERATOR": str(tmp_path / "no-such-generator"),
           "DRAWAI_MAX_SESSIONS": "1"}
    with voila(tmp_path, env) as (url, process, log_path, seen), visitor(browser, "missing") as page:
        page.goto(url, wait_until="commit")
        notice = page.locator(".drawai-notice")
        notice.first.wait_for(state="visible")
        assert "could not be loaded" in notice.first.inner_text()
        open_tab(page, "Generate")
        page.locator(".drawai-notice", has_text="Generate tab needs a generator model").wait_for()
        assert "There is no generator model at no-such-generator" in page.locator(".drawai-dashboard").inner_text()
        open_tab(page, "Fight")
        text = page.locator(".drawai-dashboard").inner_text()
        assert "Fight tab needs a generator and a classifier" in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".drawai-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-missing-models.png"))
        html = page.content()
        assert "Traceback" not in html and "safetensors" not in html and str(tmp_path) not in html
        seen.update(k.pid for k in kernels(process))
        # One session is the cap here: a second visitor is told so, and gets no kernel.
        with visitor(browser, "busy") as second:
            response = second.goto(url)
            assert response.status == 503 and "busy" in second.inner_text("body")
        assert len(kernels(process)) == 1
    log = log_path.read_text()
    assert "cannot load the classifier model" in log and "Traceback" in log  # the details are in the log
    assert "no generator model" in log
