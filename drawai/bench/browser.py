"""The dashboard section: Voila serving a notebook as `make dashboard` does, opened in headless chromium by
Playwright; the seconds to the first interactive widget and each kernel's memory, for one page and several at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from drawai.bench.cells import DASHBOARD_SESSIONS, BenchError
from drawai.paths import NOTEBOOKS, ROOT

CHROMIUM = "/usr/bin/chromium"  # Debian's (`make browser`); Playwright cannot download browsers here
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]
BUTTON_NOTEBOOK = ("import ipywidgets as widgets\n\nready = widgets.Button(description='ready')\n"
                   "ready.add_class('drawai-bench-ready')\nready")


def dashboard_measure(spec: dict) -> dict:
    """Both pages, served and measured one after the other: the baseline, then the dashboard."""
    import tempfile

    if not Path(CHROMIUM).exists():
        raise BenchError(f"the dashboard section drives {CHROMIUM}, which is missing (`make browser` installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        import nbformat

        baseline = Path(tmp) / "button.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(BUTTON_NOTEBOOK)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, baseline)
        rows = {"baseline": page_loads(baseline, "button.drawai-bench-ready", spec, Path(tmp)),
                "dashboard": page_loads(NOTEBOOKS / "dashboard.ipynb", "canvas.drawai-pad-canvas", spec,
                                        Path(tmp), generate=spec["models"]["generator"]["exists"])}
    return {"rows": rows}


def page_loads(notebook: Path, ready: str, spec: dict, work: Path, generate: bool = False) -> dict:
    """Serve `notebook` with Voila as `make dashboard` does and open it in chromium: for each number of
    sessions, the seconds from navigation to the `ready` widget on screen per page, each kernel's CPU
    seconds by then, its RSS and USS; with `generate`, the memory again once each page opened Generate."""
    import playwright.sync_api as playwright
    import psutil  # a dependency of ipykernel

    from drawai.dashboard import MAX_SESSIONS_ENV

    out = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           MAX_SESSIONS_ENV: str(max(DASHBOARD_SESSIONS) + 1)}
    with _voila(notebook, env, work) as (url, server), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)

        def kernels() -> list:
            """The running kernels (one that just exited is gone or a zombie: not counted)."""
            found = []
            for k in psutil.Process(server.pid).children(recursive=True):
                try:
                    if k.status() != psutil.STATUS_ZOMBIE and "ipykernel_launcher" in " ".join(k.cmdline()):
                        found.append(k)
                except psutil.Error:
                    pass
            return found

        def memory():
            mib = [(m.rss / 2**20, m.uss / 2**20) for m in (k.memory_full_info() for k in kernels())]
            return {"rss_mib": [m[0] for m in mib], "uss_mib": [m[1] for m in mib]}

        for sessions in spec["sessions"]:
            figures = {"seconds": [], "kernel_cpu_s": []}
            for _ in range(spec["repeats"] if sessions == 1 else 1):
                pages = [browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                         for _ in range(sessions)]
                starts = []
                for page in pages:  # all at once: navigation returns when the response starts
                    page.set_default_timeout(180_000)
                    starts.append(time.perf_counter())
                    page.goto(url, wait_until="commit")
                for page, start in zip(pages, starts):
                    page.locator(ready).wait_for(state="visible")
                    figures["seconds"].append(time.perf_counter() - start)
                figures["kernel_cpu_s"] += [sum(k.cpu_times()[:2]) for k in kernels()]
                figures.update(memory())
                if generate:
                    for page in pages:
                        page.locator(".drawai-dashboard-tabs .lm-TabBar-tab", has_text="Generate").click()
                    for page in pages:
                        page.locator(".drawai-generate-button").wait_for(state="visible")
                    figures["with_generator"] = memory()
                for page in pages:
                    page.goto("about:blank")  # the page unloads: Voila shuts its kernel down
                    page.context.close()
                deadline = time.monotonic() + 60
                while kernels() and time.monotonic() < deadline:
                    time.sleep(0.2)
            out[str(sessions)] = figures
        browser.close()
    return out


class _voila:
    """Voila on a free loopback port with the project's config (config/voila.py), stopped on exit."""

    def __init__(self, notebook: Path, env: dict, work: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(work / f"voila-{self.port}.log", "w")  # noqa: SIM115 -- closed in __exit__
        self.server = subprocess.Popen(
            [str(Path(sys.executable).with_name("voila")), "--no-browser", "--Voila.ip=127.0.0.1",
             f"--port={self.port}", "--Voila.config_file_paths=config", str(notebook)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self):
        import socket

        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return f"http://127.0.0.1:{self.port}/", self.server
            except OSError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise BenchError(f"Voila did not start: {Path(self.log.name).read_text()[-2000:]}") from None
                time.sleep(0.3)

    def __exit__(self, *exc):
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.log.close()
