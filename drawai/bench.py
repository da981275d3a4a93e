"""The benchmark behind the README's figures: accuracy, latency and memory, on this machine, in one run.

    python -m drawai.bench                        # `make bench`: everything, 3 seeds (hours on 2 cores)
    python -m drawai.bench --quick                # 1 seed, classic10, 5 epochs, fewer repetitions (~3 min + ~2 for gan)
    python -m drawai.bench --only gan             # sections: accuracy, latency, gan, dashboard, scale, demo, explain
    python -m drawai.bench --out runs/bench/X     # resume that run: cells measured there are skipped

Every figure is set against a baseline measured in the same run (the original draw-ai MLP), because
absolute times on a shared machine mean little; the load average is recorded with every cell.

- Accuracy: each recipe trained on the shared split (`data.train_test(seed=0)` of the embedded sample),
  for several seeds, on all 345 categories and on classic10; tested on the held-out drawings as they are
  and re-rendered like Google's numpy_bitmap files (`bitmaps.numpy_bitmap_style`), the rendering shift.
  The draw-ai recipe is `TrainConfig()` as it is now, read at run time; the baselines change only what
  their original recipes say (see `recipes`).
- Latency: one drawing at a time on ONE torch thread (as the drawing pad predicts): a bitmap through
  `Classifier.predict` (to_canonical + forward) and strokes through `strokes.render_strokes` + forward.
- Memory: peak RSS (VmHWM) of each training run and of a process predicting with one model. Every
  training cell and every prediction process is a fresh one, so each has its own peak.
- Generator (`gan`): the conditional GAN against the original per-label DCGAN recipe on classic10 (the
  `demo` preset), both judged by the shipped classifier (`metrics.evaluate_generator`: GAN-test top-1,
  FID with a shuffled-label control, memorisation, precision, recall, density and coverage
  against real-vs-real, CAS), at equal epochs and at equal training
  time: the per-label one is trained on until it has used the conditional one's CPU seconds. With all
  345 categories, also the shipped `models/generator-345` if it is there (evaluated, not trained).
- Dashboard: Voila serving notebooks/dashboard.ipynb as `make dashboard` does, opened in chromium by
  Playwright: page load to the first interactive widget (the drawing pad's canvas), for 1 session and for 3
  at once, and each session's kernel memory (RSS, and USS: what that kernel alone holds), before and after
  its Generate tab loads TensorFlow. Baseline: the same server on a notebook with one ipywidgets Button.
- Explanations (`explain`): `drawai.explain` with the shipped `models/classifier-345`, on the test split: the
  deletion curve (the k % most salient ink pixels blanked against as many random ones), the model-randomisation
  check, how often the 5 nearest training drawings' majority is the top guess, and the latency of an
  explanation (saliency of the top guess, nearest drawings of the top two) on one thread.
- Demo (`demo`, not in `--quick`): `make demo`'s command from start to end, fresh, against its 10-minute target
  on 2 idle cores, with each job's share; its reports stay under `<out>/demo-runs/`.

Results go to `<out>/results.json` after every cell (and `<out>/results.md`); a killed bench keeps
what it measured, and a training cell killed halfway resumes from its last epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.morphology import skeletonize
from tqdm.auto import tqdm

from drawai import bitmaps, classifier, data, jobs, metrics
from drawai import categories as cats
from drawai.classifier import TrainConfig
from drawai.io import file_sha256, new_run_folder, write_text
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, NOTEBOOKS, ROOT
from drawai.strokes import render_strokes

FORMAT = "drawai-bench/1"  # in every cell's spec: change it when a measurement changes, and old cells are redone
SPLIT_SEED = data.SPLIT_SEED  # the shared split every notebook and job uses
SHIFT_SEED = 0  # numpy_bitmap_style's per-drawing jitter of size and stroke width
SECTIONS = ("accuracy", "latency", "gan", "dashboard", "scale", "explain", "demo")
CATEGORY_SETS = ("all", "classic10")
DEFAULT_RECIPES = ("cnn", "mlp", "doodlenet-5", "doodlenet-30")
# classic10's 800 training drawings are 4 batches an epoch (all 345 categories: 108), so on classic10 every
# recipe trains this many times its epochs (the draw-ai CNN: 30 -> 150 epochs, 600 steps; 96 % top-1 with
# seed 0, where 30 epochs gave 86 %).
CLASSIC10_EPOCH_FACTOR = 5
QUICK = {"seeds": 1, "categories": ["classic10"], "recipes": ["cnn", "mlp", "doodlenet-5"], "epochs": 5, "reps": 100}
EXPLAIN_DRAWINGS = {"quick": 50, "full": 300}  # test drawings in the deletion and randomisation checks
EXPLAIN_TARGETS = {"deletion_ratio_5": 2.0, "rank_correlation": 0.3, "agreement": 0.75, "latency_p95_ms": 50}
FULL = {"seeds": 3, "categories": list(CATEGORY_SETS), "recipes": list(DEFAULT_RECIPES), "epochs": None, "reps": 500}
PAD_CANVAS, PAD_SPACING = 280, 4.0  # the DrawingPad's default size; pointer events a few pixels apart
WARMUP = 20  # calls before timing starts (first calls allocate and fill caches)
BASELINE = "mlp"
DASHBOARD_SESSIONS = (1, 3)  # pages open at once
DASHBOARD_TARGET_S = 10  # page load to the first interactive widget, seconds

GAN_CATEGORIES, GAN_PRESET = "classic10", "demo"  # the conditional vs per-label comparison
GAN_EVAL = {"n_per_class": 80, "seed": 0}  # evaluate_generator's arguments

RECIPE_NAMES = {"cnn": "draw-ai CNN", "mlp": "original MLP", "doodlenet-5": "doodleNet, 5 epochs",
                "doodlenet-30": "doodleNet, 30 epochs", "cnn-job": "draw-ai CNN, job defaults"}
ARCH_NAMES = {"cnn": "draw-ai CNN", "mlp": "original MLP", "doodlenet": "doodleNet"}


class BenchError(ValueError):
    """Options that cannot make a benchmark (unknown section, recipe or category set)."""


# --- what is measured ----------------------------------------------------------------------------------------

def recipes() -> dict[str, TrainConfig]:
    """The recipes, built from `TrainConfig()` at call time, so they follow the lead's defaults.

    The baselines take from their originals what TrainConfig can express and the rest from the defaults:
    - original MLP: Adam at 3e-3 (the original draw-ai recipe); epochs and batch size are TrainConfig's.
    - doodleNet (yining1023/doodleNet): Keras Adam at its default 1e-3, batch 256, 5 epochs (also 30).
    Neither original used augmentation, label smoothing or weight decay (AdamW with weight_decay=0 is
    Adam), so those are off. What stays from draw-ai's loop: the one-cycle schedule (the originals used a
    constant rate) and the canonical input form.
    """
    default = TrainConfig()
    original = {"weight_decay": 0.0, "label_smoothing": 0.0, "augment": False, "arch_kwargs": {}}
    doodlenet = replace(default, arch="doodlenet", lr=1e-3, batch_size=256, **original)
    job = jobs.JOBS["train-classifier"].defaults  # what the shipped model is trained with
    names = {f.name for f in fields(TrainConfig)} - {"seed"}
    return {
        "cnn": default,
        "mlp": replace(default, arch="mlp", lr=3e-3, **original),
        "doodlenet-5": replace(doodlenet, epochs=5),
        "doodlenet-30": replace(doodlenet, epochs=30),
        "cnn-job": replace(default, **{k: v for k, v in job.items() if k in names}),
    }


@dataclass(frozen=True)
class Target:
    what: str
    categories: str | None  # accuracy targets: the category set; None for latency targets
    row: str  # a recipe (accuracy) or an arch (latency)
    metric: str
    op: str  # ">=", "<", "<="
    threshold: float
    unit: str
    seeds: int = 1  # how many seeds the target is stated for


TARGETS = [
    Target("345 classes: top-1 >= 55 %", "all", "cnn", "top1", ">=", 55, "%"),
    Target("345 classes: top-5 >= 80 %", "all", "cnn", "top5", ">=", 80, "%"),
    Target("345 classes: training < 10 min on 2 cores", "all", "cnn", "train_min", "<", 10, "min"),
    Target("classic10: top-1 >= 93 % (mean of 3 seeds)", "classic10", "cnn", "top1", ">=", 93, "%", seeds=3),
    Target("345 classes: rendering-shifted top-1 within 5 points", "all", "cnn", "gap", "<=", 5, "points"),
    Target("classic10: rendering-shifted top-1 within 5 points", "classic10", "cnn", "gap", "<=", 5, "points"),
    Target("one drawing, bitmap -> top-5: p95 < 5 ms (1 thread)", None, "cnn", "bitmap_p95", "<", 5, "ms"),
    Target("one drawing, strokes -> top-5: p95 < 10 ms (1 thread)", None, "cnn", "strokes_p95", "<", 10, "ms"),
]


# --- inputs ---------------------------------------------------------------------------------------------------

def shifted_test(categories: str) -> np.ndarray:
    """The held-out drawings re-rendered like Google's numpy_bitmap files (uint8)."""
    _, test = data.train_test(data.load_sample(categories), seed=SPLIT_SEED)
    return bitmaps.numpy_bitmap_style(test.images, seed=SHIFT_SEED)


def traced_strokes(image, canvas: int = PAD_CANVAS, spacing: float = PAD_SPACING) -> list[np.ndarray]:
    """A bitmap drawing as the DrawingPad would send it: strokes of (x, y) points on a `canvas`-px pad,
    about `spacing` px apart.

    The embedded sample has no strokes, so they are traced: the skeleton of the drawing's canonical
    bitmap enlarged to the pad, walked pixel by pixel, each walk starting at a line's end.
    """
    small = torch.from_numpy(bitmaps.to_canonical(image))[None, None]
    big = F.interpolate(small, size=(canvas, canvas), mode="bilinear", align_corners=False)[0, 0].numpy()
    pixels = [tuple(p) for p in np.argwhere(skeletonize(big >= 0.5)).tolist()]
    todo = set(pixels)
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)]  # straight before diagonal
    degree = {p: sum((p[0] + dy, p[1] + dx) in todo for dy, dx in steps) for p in pixels}
    strokes = []
    for start in sorted(pixels, key=lambda p: (degree[p], p)):  # line ends (degree 1) first
        if start not in todo:
            continue
        path, p = [start], start
        todo.discard(p)
        while True:
            p = next(((p[0] + dy, p[1] + dx) for dy, dx in steps if (p[0] + dy, p[1] + dx) in todo), None)
            if p is None:
                break
            todo.discard(p)
            path.append(p)
        if len(path) >= 3 or not strokes:  # 1-2 pixel walks are skeleton spurs, not strokes
            keep = path[::max(1, round(spacing))] + ([path[-1]] if (len(path) - 1) % round(spacing) else [])
            strokes.append(np.array(keep, dtype=np.float64)[:, ::-1] + 0.5)  # (row, col) -> (x, y) centres
    return strokes


# --- the measurements: each runs in a fresh process ------------------------------------------------------------

def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: VmHWM of /proc/self/status, the peak of this process's own memory. Not ru_maxrss: Linux
    carries that over from the parent through fork and exec, so every spawned child would report at
    least its parent's size (measured: a child of a 500 MiB parent reports 505 MiB; its VmHWM, 29 MiB).
    Elsewhere ru_maxrss (KiB, bytes on macOS), which may include the parent's.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def accuracy_process(categories: str, config: dict, shifted: np.ndarray, checkpoint_dir: str,
                     progress: bool) -> dict:
    """Train one recipe on one seed; test on the held-out drawings, plain and rendering-shifted."""
    train_set, test_set = data.train_test(data.load_sample(categories), seed=SPLIT_SEED)
    epochs_here = []
    start = time.perf_counter()
    clf, history = classifier.train(train_set, TrainConfig(**config), checkpoint_dir=checkpoint_dir, resume=True,
                                    on_epoch=epochs_here.append, progress=progress)
    wall = time.perf_counter() - start
    training_rss = peak_rss_mib()  # before testing: the peak of training alone
    earlier = history[:len(history) - len(epochs_here)]  # epochs done by a run that was killed
    plain = classifier.top_k(clf.probabilities(test_set.images), test_set.labels)
    shift = classifier.top_k(clf.probabilities(shifted), test_set.labels)
    return {"top1": plain["top1"], "top5": plain["top5"], "top1_shifted": shift["top1"],
            "top5_shifted": shift["top5"], "train_seconds": wall + sum(r["seconds"] for r in earlier),
            "epoch_seconds": sum(r["seconds"] for r in history), "resumed_epochs": len(earlier),
            "final_loss": history[-1]["loss"], "peak_rss_mib": training_rss, "torch_threads": torch.get_num_threads(),
            "train_drawings": len(train_set), "test_drawings": len(test_set)}


def percentiles(ms: list[float]) -> dict:
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "mean": float(np.mean(ms)), "n": len(ms)}


def predictors(model: dict | None) -> dict:
    """{"bitmap": image -> top-5, "strokes": strokes -> top-5} for one model spec; None: the preprocessing
    alone (the baseline).

    The weights are freshly initialised: latency and memory do not depend on their values, and this way
    the latency section needs no trained model.
    """
    if model is None:
        return {"bitmap": bitmaps.to_canonical, "strokes": lambda s: render_strokes(s, layout="points")}
    names = cats.resolve("all")
    clf = classifier.Classifier(classifier.build_model(model["arch"], len(names), model["arch_kwargs"]), names)
    return {"bitmap": lambda img: clf.predict(img, k=5),
            "strokes": lambda s: clf.predict(render_strokes(s, layout="points"), k=5, canonical=True)}


def latency_process(models: dict, images: np.ndarray, strokes: list) -> dict:
    """Milliseconds per drawing on one torch thread, wall clock and this thread's CPU time.

    The models take turns drawing by drawing (the order rotating), so a burst of load from elsewhere
    on a shared machine falls on all of them alike and the ratios stay fair.
    """
    torch.set_num_threads(1)
    fns = {name: predictors(model) for name, model in models.items()}
    for fn in fns.values():
        for img, s in zip(images[:WARMUP], strokes[:WARMUP], strict=True):  # first calls allocate, fill caches
            fn["bitmap"](img)
            fn["strokes"](s)
    times = {name: {"bitmap": [], "strokes": [], "bitmap_cpu": [], "strokes_cpu": []} for name in fns}
    names = list(fns)
    for i, (img, s) in enumerate(zip(images, strokes, strict=True)):
        for name in names[i % len(names):] + names[:i % len(names)]:
            for path, arg in (("bitmap", img), ("strokes", s)):
                wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
                fns[name][path](arg)
                times[name][path + "_cpu"].append((time.thread_time_ns() - cpu) / 1e6)
                times[name][path].append((time.perf_counter_ns() - wall) / 1e6)
    return {name: {k: percentiles(v) for k, v in t.items()} for name, t in times.items()}


def prediction_memory_process(model: dict | None, images: np.ndarray, strokes: list) -> float:
    """Peak RSS (MiB) of a process that predicts drawings one by one with this one model."""
    torch.set_num_threads(1)
    fn = predictors(model)
    for img, s in zip(images, strokes, strict=True):
        fn["bitmap"](img)
        fn["strokes"](s)
    return peak_rss_mib()


def gan_comparison_process(spec: dict, run_root: str) -> dict:
    """Train the conditional GAN and the per-label recipe on the same data and judge them: both at the
    preset's epochs, and the per-label one again after as many epochs as the conditional one's CPU seconds
    buy it. Each stage's figures are kept in `run_root/stages.json`, and training resumes from checkpoints,
    so a killed bench goes on where it stopped."""
    from drawai import gan, metrics
    from drawai.classifier import Classifier

    root = Path(run_root)
    root.mkdir(parents=True, exist_ok=True)
    stages_path = root / "stages.json"
    done = json.loads(stages_path.read_text()) if stages_path.exists() else {}
    train_set, test_set = data.train_test(data.load_sample(spec["categories"]), seed=SPLIT_SEED)
    judge = Classifier.load(CLASSIFIER_DIR, categories=spec["categories"])

    def stage(name: str, config, run_dir: str) -> dict:
        if name not in done:
            model = gan.train(train_set, config, run_dir=root / run_dir, resume=True, verbose=0)
            history = model.train_history
            figures = metrics.evaluate_generator(model, judge, train_set, test_set, **spec["eval"]).summary()
            figures |= metrics.classification_accuracy_score(model, train_set, test_set, TrainConfig(**spec["cas"]),
                                                             root / f"cas-{name}", progress=False)
            done[name] = {**figures, "recipe": config.recipe, "epochs": config.epochs,
                          "cpu_seconds": sum(h["cpu_seconds"] for h in history),
                          "train_seconds": sum(h["seconds"] for h in history)}
            write_text(stages_path, json.dumps(done, indent=1))
        return done[name]

    conditional = gan.GANConfig(**spec["configs"]["conditional"])
    per_label = gan.GANConfig(**spec["configs"]["per_label"])
    cond = stage("conditional", conditional, "conditional")
    same_epochs = stage("per_label_equal_epochs", per_label, "per_label")
    epochs = max(1, round(cond["cpu_seconds"] / (same_epochs["cpu_seconds"] / same_epochs["epochs"])))
    # Longer: the same run continued (an epoch's batches do not depend on the total); shorter: a new run.
    stage("per_label_equal_cpu", replace(per_label, epochs=epochs),
          "per_label" if epochs >= per_label.epochs else "per_label_short")
    return {"rows": done}


def shipped_generator_process(spec: dict, run_root: str) -> dict:
    """Judge the shipped generator (not trained here) on its categories' shared split; its CAS training resumes
    from `run_root` if a bench was killed."""
    from drawai import gan, metrics
    from drawai.classifier import Classifier

    model = gan.load(ROOT / spec["path"])
    names = list(model.categories)
    train_set, test_set = data.train_test(data.load_sample(names), seed=SPLIT_SEED)
    judge = Classifier.load(CLASSIFIER_DIR, categories=names)
    figures = metrics.evaluate_generator(model, judge, train_set, test_set, **spec["eval"]).summary()
    figures |= metrics.classification_accuracy_score(model, train_set, test_set, TrainConfig(**spec["cas"]),
                                                     Path(run_root) / "cas", progress=False)
    made = model.manifest.get("metrics", {})
    return {**figures, "recipe": model.recipe, "categories": len(names), "epochs": made.get("epochs"),
            "cpu_seconds": made.get("train_cpu_seconds"), "train_seconds": made.get("train_seconds")}


def in_fresh_process(fn, *args):
    """fn(*args) in a new Python process (spawned, not forked: nothing shared, its own peak RSS)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- the dashboard: Voila in a real browser ------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's (`make browser`); Playwright cannot download browsers here
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]
BUTTON_NOTEBOOK = ("import ipywidgets as widgets\n\nready = widgets.Button(description='ready')\n"
                   "ready.add_class('drawai-bench-ready')\nready")


def dashboard_cell(options: dict) -> Cell:
    from drawai import dashboard

    models = {kind: dashboard.model_path(kind) for kind in ("classifier", "generator")}
    return Cell("dashboard", {
        "format": FORMAT, "kind": "dashboard", "sessions": list(DASHBOARD_SESSIONS),
        "repeats": 1 if options["quick"] else 3,  # single-session page loads (each a fresh kernel)
        "models": {kind: {"path": str(path), "exists": (path / "manifest.json").exists(),
                          "manifest_sha256": file_sha256(path / "manifest.json") if (path / "manifest.json").exists()
                          else None} for kind, path in models.items()}})


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


# --- the plan, and measuring it cell by cell ----------------------------------------------------------------------

@dataclass
class Cell:
    key: str
    spec: dict  # everything that decides the figures: a stored cell with the same spec is not measured again


def plan(options: dict) -> list[Cell]:
    """The cells to measure for these options, in order: latency first (a minute), then accuracy seed by seed,
    classic10 before all 345 categories, so an interrupted bench has comparable rows, then the generators."""
    book = recipes()
    cells = []
    if "latency" in options["only"]:
        models = {}
        for name in options["recipes"]:  # one row per distinct model (doodleNet 5 and 30 epochs are one)
            models.setdefault(json.dumps([book[name].arch, book[name].arch_kwargs], sort_keys=True), name)
        rows = {"baseline": None, **{book[n].arch: {"arch": book[n].arch, "arch_kwargs": book[n].arch_kwargs}
                                     for n in models.values()}}
        cells.append(Cell("latency", {"format": FORMAT, "kind": "latency", "rows": rows, "reps": options["reps"],
                                      "warmup": WARMUP, "drawings": "embedded sample test split, all categories",
                                      "pad_canvas": PAD_CANVAS, "pad_spacing": PAD_SPACING}))
    if "dashboard" in options["only"]:
        cells.append(dashboard_cell(options))
    if "accuracy" in options["only"]:
        checksum = data.sample_info()["sha256"]
        order = [c for c in ("classic10", "all") if c in options["categories"]]
        for categories in order:
            for seed in range(options["seeds"]):
                for name in options["recipes"]:
                    config = replace(book[name], seed=seed)
                    if options["epochs"]:
                        config = replace(config, epochs=options["epochs"])
                    elif categories == "classic10":
                        config = replace(config, epochs=config.epochs * CLASSIC10_EPOCH_FACTOR)
                    cells.append(Cell(f"accuracy/{categories}/{name}/seed{seed}", {
                        "format": FORMAT, "kind": "accuracy", "categories": categories, "recipe": name, "seed": seed,
                        "config": asdict(config), "epochs_overridden": bool(options["epochs"]),
                        "split_seed": SPLIT_SEED, "shift_seed": SHIFT_SEED, "data": checksum}))
    if "gan" in options["only"]:
        cells += gan_cells(options)
    if "scale" in options["only"]:  # images/s in 1 and 2 processes (torchrun on 127.0.0.1)
        cells.append(Cell("scale", {"format": FORMAT, "kind": "scale", "categories": "classic10", "per_class": 100,
                                    "epochs": 2 if options.get("quick") else 3, "batch_size": 128,
                                    "layouts": [[1, 1], [1, 2], [2, 1]], "workers": [0, 1, 2]}))
    if "explain" in options["only"]:
        cells.append(explain_cell(options))
    if "demo" in options["only"]:
        cells.append(demo_cell())
    return cells


def gan_cells(options: dict) -> list[Cell]:
    """The classic10 comparison, and with all 345 categories the shipped generator if there is one."""
    from drawai import gan  # TensorFlow: only when the section is asked for

    common = {"format": FORMAT, "split_seed": SPLIT_SEED, "data": data.sample_info()["sha256"], "eval": GAN_EVAL,
              "judge": file_sha256(CLASSIFIER_DIR / "model.safetensors")}
    epochs = {"epochs": options["epochs"]} if options["epochs"] else {}
    configs = {r: gan.GANConfig.from_preset(GAN_PRESET, r, **epochs).to_dict() for r in gan.RECIPES}
    # CAS trains the accuracy section's draw-ai CNN recipe, on classic10 for as many steps as it does there
    cas = asdict(replace(TrainConfig(), epochs=options["epochs"] or TrainConfig().epochs * CLASSIC10_EPOCH_FACTOR))
    cells = [Cell(f"gan/{GAN_CATEGORIES}", {**common, "kind": "gan", "categories": GAN_CATEGORIES, "preset": GAN_PRESET,
                                           "configs": configs, "epochs_overridden": bool(epochs), "cas": cas})]
    manifest = GENERATOR_DIR / "manifest.json"
    if "all" in options["categories"] and manifest.exists():
        weights = json.loads(manifest.read_text()).get("weights", {}).get("sha256")
        cells.append(Cell("gan/shipped", {**common, "kind": "gan-shipped", "weights": weights,
                                          "path": shown_path(GENERATOR_DIR), "cas": asdict(TrainConfig())}))
    return cells


def shown_path(path: Path) -> str:
    """Relative to the repository when inside it (as `ROOT / path` reads it back)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def measure(cell: Cell, out: Path, progress: bool, cache: dict) -> dict:
    """Measure one cell (in fresh processes); returns its figures. `cache` keeps inputs between cells."""
    spec = cell.spec
    if spec["kind"] == "dashboard":
        return dashboard_measure(spec)
    if spec["kind"] == "demo":
        return demo_measure(spec, out, progress)
    if spec["kind"] == "explain":
        return in_fresh_process(explain_process, spec)
    if spec["kind"] == "scale":
        from drawai import distributed

        figures = distributed.throughput(layouts=[tuple(x) for x in spec["layouts"]], categories=spec["categories"],
                                         per_class=spec["per_class"], epochs=spec["epochs"],
                                         batch_size=spec["batch_size"], workers=spec["workers"], verbose=progress)
        return json.loads(json.dumps(figures))  # int keys -> str, as results.json stores them
    if spec["kind"] == "gan":
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        run_root = out / "checkpoints" / f"{cell.key.replace('/', '-')}-{digest}"
        result = in_fresh_process(gan_comparison_process, spec, str(run_root))
        shutil.rmtree(run_root, ignore_errors=True)
        return result
    if spec["kind"] == "gan-shipped":
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        run_root = out / "checkpoints" / f"gan-shipped-{digest}"
        result = in_fresh_process(shipped_generator_process, spec, str(run_root))
        shutil.rmtree(run_root, ignore_errors=True)
        return result
    if spec["kind"] == "accuracy":
        categories = spec["categories"]
        if categories not in cache:
            cache[categories] = shifted_test(categories)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        checkpoints = out / "checkpoints" / f"{cell.key.replace('/', '-')}-{digest}"
        result = in_fresh_process(accuracy_process, categories, spec["config"], cache[categories], str(checkpoints),
                                  progress)
        shutil.rmtree(checkpoints, ignore_errors=True)
        return result
    # latency: the same drawings for every model, as a bitmap and as the strokes a pad would send
    if "latency_inputs" not in cache:
        _, test = data.train_test(data.load_sample("all"), seed=SPLIT_SEED)
        pick = np.random.default_rng(0).choice(len(test), size=min(spec["reps"], len(test)), replace=False)
        images = test.images[np.sort(pick)]
        cache["latency_inputs"] = images, [traced_strokes(img) for img in tqdm(
            images, desc="tracing strokes", unit="drawing", leave=False, disable=not progress)]
    images, strokes = cache["latency_inputs"]
    rows = in_fresh_process(latency_process, spec["rows"], images, strokes)
    for name, model in tqdm(spec["rows"].items(), desc="memory", unit="process", leave=False, disable=not progress):
        rows[name]["peak_rss_mib"] = in_fresh_process(prediction_memory_process, model, images[:WARMUP],
                                                      strokes[:WARMUP])
    return {"rows": rows, "stroke_points_mean": float(np.mean([sum(len(s) for s in d) for d in strokes]))}


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(), "commit": commit}


def load_results(out: Path) -> dict:
    path = out / "results.json"
    if not path.exists():
        return {"format": FORMAT, "cells": {}}
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is not valid JSON ({e}); move it away or use another --out") from None
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise BenchError(f"{path} is not a draw-ai bench results file")
    return results


def save_results(out: Path, results: dict, cells: list[Cell]) -> None:
    write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text(out / "results.md", report(results, cells))


def run(cells: list[Cell], out: Path, options: dict, progress: bool = True) -> tuple[dict, list[str]]:
    """Measure the cells not yet in `out` (with the same spec), saving after each; returns results and failures."""
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(out)
    results["options"] = options
    results.setdefault("environment", environment())
    results["finished"] = False
    todo = [c for c in cells if results["cells"].get(c.key, {}).get("spec") != c.spec]
    if len(todo) < len(cells):
        print(f"{out}: {len(cells) - len(todo)} of {len(cells)} cells already measured, skipped", file=sys.stderr)
    save_results(out, results, cells)
    failures, cache = [], {}
    for cell in tqdm(todo, desc="bench", unit="cell", disable=not progress):
        load_before = os.getloadavg()[0]
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            figures = measure(cell, out, progress, cache)
        except Exception as e:  # one recipe running out of memory must not cost the others
            failures.append(f"{cell.key}: {type(e).__name__}: {e}")
            print(f"FAILED {failures[-1]}", file=sys.stderr)
            continue
        results["cells"][cell.key] = {"spec": cell.spec, **figures, "started": started,
                                      "load_average": [load_before, os.getloadavg()[0]]}
        save_results(out, results, cells)
    results["finished"] = not failures
    save_results(out, results, cells)
    return results, failures


# --- tables ---------------------------------------------------------------------------------------------------------

def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not values:
        return "–"
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def summarise(results: dict, cells: list[Cell]) -> dict:
    """Per (categories, recipe): the per-seed figures in display units (%, points, minutes, MiB)."""
    rows: dict = {}
    for cell in cells:
        got = results["cells"].get(cell.key)
        if cell.spec["kind"] != "accuracy" or not got or got.get("spec") != cell.spec:
            continue
        row = rows.setdefault((cell.spec["categories"], cell.spec["recipe"]), {
            "top1": [], "top5": [], "top1_shifted": [], "gap": [], "train_min": [], "rss": [], "resumed": 0,
            "config": cell.spec["config"], "epochs_overridden": cell.spec["epochs_overridden"]})
        row["top1"].append(100 * got["top1"])
        row["top5"].append(100 * got["top5"])
        row["top1_shifted"].append(100 * got["top1_shifted"])
        row["gap"].append(100 * (got["top1"] - got["top1_shifted"]))
        row["train_min"].append(got["train_seconds"] / 60)
        row["rss"].append(got["peak_rss_mib"])
        row["resumed"] += bool(got.get("resumed_epochs"))
    recipe_order = list(dict.fromkeys(c.spec["recipe"] for c in cells if c.spec["kind"] == "accuracy"))
    return dict(sorted(rows.items(), key=lambda kv: (CATEGORY_SETS.index(kv[0][0]), recipe_order.index(kv[0][1]))))


def dashboard_rows(results: dict, cells: list[Cell]) -> dict:
    cell = next((c for c in cells if c.spec["kind"] == "dashboard"), None)
    got = results["cells"].get("dashboard") if cell else None
    return got if got and got.get("spec") == cell.spec else {}


def scale_rows(results: dict, cells: list[Cell]) -> dict:
    cell = next((c for c in cells if c.spec["kind"] == "scale"), None)
    got = results["cells"].get("scale") if cell else None
    return got if got and got.get("spec") == cell.spec else {}


def scale_table(scale: dict) -> str:
    one = scale["model"].get("1x1")
    rows = [[f"model, {k.split('x')[0]} process(es) x {k.split('x')[1]} thread(s)", f"{v:.0f}", ratio(v, one)]
            for k, v in scale["model"].items()]
    if "scaling_efficiency" in scale:
        rows.append(["scaling efficiency, 2 processes vs 1", f"{scale['scaling_efficiency']:.0%}", ""])
    rows += [[f"preprocessing, {n} DataLoader worker(s)", f"{v:.0f}", ""] for n, v in scale["preprocessing"].items()]
    base = scale["end_to_end"].get("1")
    rows += [[f"end to end from numpy_bitmap files, {n} process(es)", f"{v:.0f}", ratio(v, base)]
             for n, v in scale["end_to_end"].items()]
    return table(["what", "images/s", "vs 1 process"], rows)


def latency_rows(results: dict, cells: list[Cell]) -> dict:
    cell = next((c for c in cells if c.spec["kind"] == "latency"), None)
    got = results["cells"].get("latency") if cell else None
    return got if got and got.get("spec") == cell.spec else {}


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def category_label(categories: str) -> str:
    return f"{len(cats.resolve(categories))} ({categories})" if categories != "all" else "345 (all)"


def accuracy_table(summary: dict) -> str:
    out = []
    for (categories, recipe), r in summary.items():
        base = summary.get((categories, BASELINE))
        vs = ratio(np.mean(r["top1"]), np.mean(base["top1"])) if base else "–"
        out.append([category_label(categories), RECIPE_NAMES.get(recipe, recipe), str(len(r["top1"])),
                    mean_std(r["top1"]), mean_std(r["top5"]), mean_std(r["top1_shifted"]), mean_std(r["gap"]),
                    mean_std(r["train_min"], digits=2), vs])
    return table(["categories", "recipe", "seeds", "top-1 %", "top-5 %", "top-1 % shifted", "gap (points)",
                  "train min", f"top-1 vs {RECIPE_NAMES[BASELINE]}"], out)


def resumed_note(summary: dict) -> str:
    n = sum(r["resumed"] for r in summary.values())
    return (f"\n\n{n} training run{'s were' if n > 1 else ' was'} killed and resumed from a checkpoint: "
            "train min adds up the epochs of both processes." if n else "")


def recipe_table(summary: dict, cells: list[Cell]) -> str:
    seen, out = set(), []
    epochs: dict[str, dict[str, int]] = {}  # recipe -> category set -> epochs
    for cell in cells:
        if cell.spec["kind"] == "accuracy":
            epochs.setdefault(cell.spec["recipe"], {})[cell.spec["categories"]] = cell.spec["config"]["epochs"]
    for cell in cells:
        if cell.spec["kind"] != "accuracy" or cell.spec["recipe"] in seen:
            continue
        seen.add(cell.spec["recipe"])
        c = cell.spec["config"]
        by_set = epochs[cell.spec["recipe"]]
        shown_epochs = (str(next(iter(by_set.values()))) if len(set(by_set.values())) == 1 else
                        f"{by_set['all']} (classic10: {by_set['classic10']})")
        optimiser = "Adam" if c["weight_decay"] == 0 else f"AdamW, decay {c['weight_decay']:g}"
        out.append([RECIPE_NAMES.get(cell.spec["recipe"], cell.spec["recipe"]), c["arch"],
                    json.dumps(c["arch_kwargs"]) if c["arch_kwargs"] else "defaults", optimiser,
                    f"{c['lr']:g}", str(c["batch_size"]), shown_epochs, f"{c['label_smoothing']:g}",
                    "yes" if c["augment"] else "no"])
    return table(["recipe", "arch", "widths", "optimiser", "peak lr (one-cycle)", "batch", "epochs",
                  "label smoothing", "augmentation"], out)


def latency_table(lat: dict) -> str:
    rows = lat["rows"]
    base = rows.get(BASELINE)
    out = []
    for name, r in rows.items():
        label = "preprocessing only (no model)" if name == "baseline" else ARCH_NAMES.get(name, name)
        vs = "–"
        if base and name != "baseline":
            vs = " / ".join(ratio(r[path]["p95"], base[path]["p95"]) for path in ("bitmap", "strokes"))
        out.append([label, f"{r['bitmap']['p50']:.2f}", f"{r['bitmap']['p95']:.2f}", f"{r['strokes']['p50']:.2f}",
                    f"{r['strokes']['p95']:.2f}", f"{r['bitmap_cpu']['p50']:.2f} / {r['strokes_cpu']['p50']:.2f}",
                    vs])
    return table(["model (345 classes)", "bitmap p50 ms", "bitmap p95 ms", "strokes p50 ms", "strokes p95 ms",
                  "CPU p50 ms (bitmap / strokes)", f"p95 vs {ARCH_NAMES[BASELINE]} (bitmap / strokes)"], out)


def memory_table(summary: dict, lat: dict) -> str:
    out = []
    rows = lat.get("rows", {})
    if rows:
        base = rows.get("baseline", {}).get("peak_rss_mib")
        for name, r in rows.items():
            label = ("Python + torch + drawai, preprocessing only" if name == "baseline"
                     else f"prediction, {ARCH_NAMES.get(name, name)}, 345 classes")
            vs = f"{ratio(r['peak_rss_mib'], base)} baseline" if base and name != "baseline" else "–"
            out.append([label, f"{r['peak_rss_mib']:.0f}", vs])
    for (categories, recipe), r in summary.items():
        base = summary.get((categories, BASELINE))
        vs = f"{ratio(np.mean(r['rss']), np.mean(base['rss']))} {RECIPE_NAMES[BASELINE]}" if base else "–"
        out.append([f"training, {RECIPE_NAMES.get(recipe, recipe)}, {category_label(categories)}",
                    mean_std(r["rss"], digits=0), vs])
    return table(["process", "peak RSS MiB", "ratio"], out)


def check(t: Target, summary: dict, lat: dict) -> tuple[str, str, str] | None:
    """(measured, PASS/FAIL, note) for a target, or None when it was not measured."""
    if t.categories is None:
        row = lat.get("rows", {}).get(t.row)
        if not row:
            return None
        path, stat = t.metric.split("_")
        value, note = row[path][stat], f"n={row[path]['n']}"
    else:
        row = summary.get((t.categories, t.row))
        if not row:
            return None
        value = float(np.mean(row[t.metric]))
        n = len(row[t.metric])
        note = f"{n} seed{'s' if n > 1 else ''}" + (f", only {n} of {t.seeds}" if n < t.seeds else "")
        if row["epochs_overridden"]:
            note += f", {row['config']['epochs']} epochs (not the recipe's)"
    ok = {">=": value >= t.threshold, "<": value < t.threshold, "<=": value <= t.threshold}[t.op]
    return f"{value:.2f} {t.unit}", "PASS" if ok else "FAIL", note


def targets_table(summary: dict, lat: dict, gan: dict | None = None, dash: dict | None = None,
                  demo: dict | None = None, expl: dict | None = None) -> str:
    out = []
    for t in TARGETS:
        got = check(t, summary, lat)
        if got:
            out.append([t.what, *got])
    out += gan_targets(gan or {})
    out += dashboard_targets(dash or {})
    out += demo_targets(demo or {})
    out += explain_targets(expl or {})
    return table(["target", "measured", "result", "note"], out) if out else ""


# --- the generator section ----------------------------------------------------------------------------------------

GAN_STAGES = {  # row label per stage of the comparison cell
    "conditional": "conditional GAN (draw-ai)",
    "per_label_equal_epochs": "per-label DCGANs (original), equal epochs",
    "per_label_equal_cpu": "per-label DCGANs (original), equal CPU seconds",
}


def gan_figures(results: dict, cells: list[Cell]) -> dict:
    """{"comparison": figures per stage, "spec": its spec, "shipped": figures} for the gan cells measured
    with their current spec."""
    out = {}
    for cell in cells:
        got = results["cells"].get(cell.key)
        if cell.spec["kind"] not in ("gan", "gan-shipped") or not got or got.get("spec") != cell.spec:
            continue
        if cell.spec["kind"] == "gan":
            out["comparison"], out["spec"] = got["rows"], cell.spec
        else:
            out["shipped"] = got
    return out


def gan_table(gan: dict) -> str:
    def pct(x):
        return f"{100 * x:.1f}"

    def real_row(f, n):
        return ["real drawings (the references)", str(n), "–", "–", "–", pct(f["real_test_top1"]),
                f"{f['fid_class_real_mean']:.2f} (floor)", "–", f"{f['precision_real']:.2f}",
                f"{f['recall_real']:.2f}", f"{f['coverage_real']:.2f}",
                pct(f["cas_real_top1"]) if "cas_real_top1" in f else "–", "1"]

    def row(name, f, n):
        return [name, str(n), str(f["epochs"]) if f.get("epochs") is not None else "?",
                f"{f['cpu_seconds']:.0f}" if f.get("cpu_seconds") is not None else "?",
                f"{f['train_seconds']:.0f}" if f.get("train_seconds") is not None else "?",
                pct(f["gan_test_top1"]), f"{f['fid_class_mean']:.2f}", f"{f['fid_class_shuffled_mean']:.2f}",
                f"{f['precision']:.2f}", f"{f['recall']:.2f}", f"{f['coverage']:.2f}",
                pct(f["cas_top1"]) if "cas_top1" in f else "–", f"{f['memorisation_ratio']:.2f}"]

    out = []
    comparison = gan.get("comparison", {})
    if comparison:
        n = len(cats.resolve(gan["spec"]["categories"]))
        out.append(real_row(next(iter(comparison.values())), n))
        out += [row(label, comparison[stage], n)
                for stage, label in GAN_STAGES.items() if stage in comparison]
    if "shipped" in gan:
        f = gan["shipped"]
        out.append(real_row(f, f["categories"]))
        out.append(row(f"`{gan['shipped']['spec']['path']}` (published, not trained here)", f, f["categories"]))
    return table(["generator", "categories", "epochs", "train CPU s", "train wall s", "GAN-test top-1 %",
                  "per-class FID", "shuffled-label control", "precision", "recall", "coverage", "CAS top-1 %",
                  "memorisation"], out)


def gan_targets(gan: dict) -> list[list[str]]:
    def rows(what: str, summary: dict, note: str) -> list[list[str]]:
        return [[f"{what}: {t['target']}", t["measured"], {True: "PASS", False: "FAIL", None: "–"}[t["passed"]], note]
                for t in metrics.generator_targets(summary)]

    out = []
    comparison = gan.get("comparison", {})
    note = "classic10" + (", epochs overridden (not the preset's)" if gan.get("spec", {}).get("epochs_overridden")
                          else "")
    if "conditional" in comparison:
        out += rows("classic10 conditional GAN", comparison["conditional"], note)
    if "conditional" in comparison and "per_label_equal_cpu" in comparison:
        c, p = comparison["conditional"], comparison["per_label_equal_cpu"]
        keys = ("gan_test_top1", "coverage", "cas_top1")
        ahead = all(c.get(k, 0) > p.get(k, 0) for k in keys)
        out.append(["classic10: conditional ahead of per-label at equal training time (GAN-test top-1, coverage, "
                    "CAS top-1)", " vs ".join(", ".join(f"{f.get(k, float('nan')):.2f}" for k in keys) for f in (c, p)),
                    "PASS" if ahead else "FAIL", f"{note}; CPU s {c['cpu_seconds']:.0f} vs {p['cpu_seconds']:.0f}"])
    if "shipped" in gan:
        out += rows("345-class generator (published)", gan["shipped"], f"{gan['shipped']['categories']} categories")
    return out


# --- the dashboard section ---------------------------------------------------------------------------------------


def dashboard_table(dash: dict) -> str:
    rows = dash["rows"]
    base = rows.get("baseline", {})
    out = []
    for name, label in (("baseline", "baseline: one ipywidgets Button"), ("dashboard", "the dashboard")):
        for sessions, f in rows.get(name, {}).items():
            b = base.get(sessions, {})
            seconds, rss, uss = np.median(f["seconds"]), np.mean(f["rss_mib"]), np.mean(f["uss_mib"])
            later = f.get("with_generator")
            out.append([label, sessions, f"{seconds:.1f} (max {max(f['seconds']):.1f})",
                        f"{np.mean(f['kernel_cpu_s']):.1f}", f"{rss:.0f}", f"{uss:.0f}",
                        f"{np.mean(later['rss_mib']):.0f} / {np.mean(later['uss_mib']):.0f}" if later else "–",
                        ratio(seconds, np.median(b["seconds"])) + " / " + ratio(rss, np.mean(b["rss_mib"]))
                        if b and name != "baseline" else "–"])
    return table(["page", "sessions", "load to first widget s, median", "kernel CPU s", "kernel RSS MiB",
                  "kernel USS MiB", "RSS / USS MiB after Generate", "vs baseline (load / RSS)"], out)


def dashboard_targets(dash: dict) -> list[list[str]]:
    one = dash.get("rows", {}).get("dashboard", {}).get("1")
    if not one:
        return []
    seconds = float(np.median(one["seconds"]))
    ok = seconds < DASHBOARD_TARGET_S
    return [[f"dashboard: page load to first interactive widget < {DASHBOARD_TARGET_S} s", f"{seconds:.2f} s",
             "PASS" if ok else "FAIL", f"median of {len(one['seconds'])}, 1 session"]]


def report(results: dict, cells: list[Cell]) -> str:
    """The Markdown tables, ready to paste into the README."""
    summary, lat = summarise(results, cells), latency_rows(results, cells)
    gan, dash = gan_figures(results, cells), dashboard_rows(results, cells)
    env = results.get("environment", {})
    loads = [x for c in results["cells"].values() for x in c.get("load_average", [])]
    quick = ("\n\n**Quick run** (`--quick`: 1 seed, classic10, 5 epochs): a smoke test of the bench, not the "
             "figures." if results.get("options", {}).get("quick") else "")
    parts = [f"## Benchmark\n\ndraw-ai `{env.get('commit', '?')}`, Python {env.get('python', '?')}, torch "
             f"{env.get('torch', '?')}, {env.get('cpus', '?')} CPUs ({env.get('machine', '?')}); load average "
             f"during the run {min(loads, default=0):.1f}-{max(loads, default=0):.1f}. "
             f"Compare figures within this table, not with other machines.{quick}"]
    if summary:
        parts += ["### Accuracy\n\nThe embedded sample (100 drawings per category), the shared split "
                  f"(`data.split(seed={SPLIT_SEED})`: 80 train / 20 test per category), mean ± std over training "
                  "seeds. *Shifted*: the test drawings re-rendered like Google's numpy_bitmap files "
                  f"(`bitmaps.numpy_bitmap_style(seed={SHIFT_SEED})`); *gap*: top-1 minus shifted top-1. "
                  "*Train min*: wall-clock of `classifier.train` (canonicalising the training set included).",
                  accuracy_table(summary) + resumed_note(summary),
                  "Recipes (every one trained by `classifier.train`: AdamW with a one-cycle schedule, 25 % warm-up; "
                  "weight decay 0 makes it Adam; the originals used a constant learning rate):",
                  recipe_table(summary, cells)]
    if lat:
        parts += ["### Latency\n\nOne drawing at a time on one torch thread (`torch.set_num_threads(1)`, as the "
                  f"drawing pad predicts), {lat['rows'][next(iter(lat['rows']))]['bitmap']['n']} drawings from the "
                  f"test split after {WARMUP} warm-up calls. *Bitmap*: `Classifier.predict(image)` (to_canonical + "
                  "forward + top-5). *Strokes*: `strokes.render_strokes` + forward + top-5, on strokes traced from "
                  f"the same drawings as a {PAD_CANVAS}-px pad would send them (mean "
                  f"{lat['stroke_points_mean']:.0f} points a drawing). The models take turns drawing by drawing, "
                  "so load from elsewhere falls on all alike. *CPU*: the thread's CPU time, the work without the "
                  "waits for a busy machine. Weights do not change latency; the models are freshly initialised.",
                  latency_table(lat)]
    if summary or lat:
        parts += ["### Memory\n\nPeak resident set size (VmHWM) of a fresh process: one predicting drawings "
                  f"one by one ({WARMUP} of them, bitmap and strokes) with one model, and each training run (up to "
                  "the end of training, testing excluded).",
                  memory_table(summary, lat)]
    if gan:
        parts += ["### Generator\n\nThe conditional GAN against the original per-label DCGAN recipe on the same "
                  f"data (the `{GAN_PRESET}` preset on {GAN_CATEGORIES}, the shared split's training drawings), judged "
                  f"by `{shown_path(CLASSIFIER_DIR)}` restricted to the GAN's categories with "
                  f"`metrics.evaluate_generator` ({GAN_EVAL['n_per_class']} generated drawings per class). *Equal "
                  "CPU seconds*: the per-label recipe trained on until its training used as much CPU time (process "
                  "time, all threads) as the conditional GAN's. *FID*: pooled over classes, against the real test "
                  "drawings, in the classifier's feature space; *per-class FID* on its 16 leading principal axes, "
                  "with the shuffled-label control (another class's generated drawings); *precision*, *recall*, "
                  "*coverage*: per class, k-NN manifolds (k = 5) against half of the class's real drawings, the real "
                  "row comparing the other half (real vs real); *CAS*: the draw-ai CNN trained on generated drawings "
                  "only, tested on the real test split (real row: trained on the real training split); "
                  "*memorisation*: median distance to the nearest training drawing over that of real test drawings "
                  "(~1 novel, ~0 copies).",
                  gan_table(gan)]
    if dash:
        models = dash["spec"]["models"]
        gen = ("the generator loaded on Generate" if models["generator"]["exists"] else
               f"no generator at {models['generator']['path']}, so Generate was not measured")
        parts += ["### Dashboard\n\nVoila serving `notebooks/dashboard.ipynb` as `make dashboard` does, opened in "
                  "headless chromium by Playwright, pages opened at once. *Load*: from navigation to the drawing "
                  "pad's canvas on screen (the first interactive widget; one fresh kernel per page, median over "
                  f"{dash['spec']['repeats']} loads for 1 session). *Kernel CPU*: what each kernel had used by "
                  "then, the work without the waiting. *RSS*: each kernel's resident memory, *USS*: the part only "
                  f"it holds (what one more session costs); {gen}. Baseline: the same server on a notebook with "
                  "one ipywidgets Button (kernel start-up, Voila, the widget libraries).",
                  dashboard_table(dash)]
    scale = scale_rows(results, cells)
    if scale:
        parts += ["### Past one process\n\n`drawai.distributed.throughput` (also `python -m drawai.distributed`): "
                  f"training images/second on {scale['spec']['categories']} ({scale['spec']['per_class']} drawings a "
                  f"class, batch {scale['spec']['batch_size']}, {scale['spec']['epochs']} epochs) in 1 and 2 "
                  "processes under torchrun (gloo on 127.0.0.1), canonicalising through DataLoader workers, and end "
                  "to end from numpy_bitmap files. Every process competes for the same cores: 2 processes x 1 thread "
                  "and 1 process x 2 threads use as many; scaling efficiency = rate(2 processes) / (2 x rate(1)).",
                  scale_table(scale)]
    demo = demo_rows(results, cells)
    if demo:
        parts += ["### Demo\n\n`make demo`'s command (`python -m drawai.jobs demo --fresh`) from start to end, every "
                  "job's kernel start-up included, with each job's share from the demo's record; its reports are "
                  f"under `{demo['runs']}`. The target is for 2 idle cores: this machine has {demo['cpus']} CPUs.",
                  demo_table(demo)]
    expl = explain_rows(results, cells)
    if expl:
        restricted = "" if expl["spec"]["categories"] == "all" else f" restricted to {expl['spec']['categories']}"
        parts += [f"### Explanations\n\n`drawai.explain` with `{expl['spec']['model']}`{restricted} on the shared "
                  f"split's test drawings. *Deletion*: on {expl['n_drawings']} of them, the k % most salient ink "
                  f"pixels (integrated gradients, {expl['spec']['ig_steps']} steps, of the guessed class's "
                  "mirror-averaged probability) set to 0, against as many random ink pixels; the mean fall of that "
                  f"probability, from {expl['deletion']['start']:.3f}. *Area*: the probability left, averaged over "
                  "k = 1-50 %. *Randomisation*: Spearman correlation over the ink of each map with the map of the "
                  "same model with its last convolution stage and head re-initialised (Adebayo et al. 2018). "
                  "*Agreement*: the majority label of the 5 nearest training drawings is the top guess, over the "
                  "whole test split. *Latency*: one drawing on one thread, from its canonical form: saliency of the "
                  "top guess, nearest drawings of the top two guesses; *CPU*: the thread's CPU time, the work "
                  "without the waits for a busy machine.",
                  explain_table(expl)]
    targets = targets_table(summary, lat, gan, dash, demo, expl)
    if targets:
        parts += ["### Targets", targets]
    return "\n\n".join(parts) + "\n"


# --- the explain section -------------------------------------------------------------------------------------------

def explain_cell(options: dict) -> Cell:
    from drawai import explain

    # --quick: the model restricted to classic10, whose index of 800 training drawings builds in seconds
    return Cell("explain", {"format": FORMAT, "kind": "explain", "model": shown_path(CLASSIFIER_DIR),
                            "categories": "classic10" if options["quick"] else "all",
                            "weights": file_sha256(CLASSIFIER_DIR / "model.safetensors"),
                            "drawings": EXPLAIN_DRAWINGS["quick" if options["quick"] else "full"],
                            "reps": options["reps"], "warmup": WARMUP, "ig_steps": explain.IG_STEPS,
                            "space": explain.INDEX_FORMAT, "split_seed": SPLIT_SEED,
                            "data": data.sample_info()["sha256"]})


def explain_process(spec: dict) -> dict:
    """The faithfulness figures and the latency of `drawai.explain` for one model, on one torch thread."""
    from drawai import explain

    torch.set_num_threads(1)
    clf = classifier.Classifier.load(ROOT / spec["model"], categories=spec["categories"])
    _, test = data.train_test(data.load_sample(clf.categories), seed=spec["split_seed"])
    x = bitmaps.to_canonical(test.images)
    started = time.perf_counter()
    index = explain.nearest_index(clf)
    index_seconds = time.perf_counter() - started
    pick = np.sort(np.random.default_rng(0).choice(len(x), size=min(spec["drawings"], len(x)), replace=False))
    with torch.no_grad():
        guesses = explain.scorer(clf)(torch.from_numpy(x[pick])[:, None]).argmax(1).numpy()
    maps = np.stack([explain.saliency(clf, x[i], label=int(c), canonical=True) for i, c in zip(pick, guesses)])
    curve = explain.deletion_curve(clf, x[pick], maps, guesses)
    shuffled = explain.randomised(clf)
    again = np.stack([explain.saliency(shuffled, x[i], label=int(c), canonical=True) for i, c in zip(pick, guesses)])
    times = {name: [] for name in ("saliency", "nearest", "total", "saliency_cpu", "nearest_cpu", "total_cpu")}
    timed = np.random.default_rng(1).choice(len(x), size=min(spec["reps"] + spec["warmup"], len(x)), replace=False)
    for n, i in enumerate(timed):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        explain.saliency(clf, x[i], canonical=True)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        top2 = np.argsort(-explain.embed(clf, x[i][None])[0])[:2]
        for c in top2:
            explain.nearest(clf, x[i], label=int(c), canonical=True, index=index)
        t2, c2 = time.perf_counter_ns(), time.thread_time_ns()
        if n >= spec["warmup"]:  # the first calls allocate and fill caches
            for name, ns in (("saliency", t1 - t0), ("nearest", t2 - t1), ("total", t2 - t0),
                             ("saliency_cpu", c1 - c0), ("nearest_cpu", c2 - c1), ("total_cpu", c2 - c0)):
                times[name].append(ns / 1e6)
    return {"n_drawings": len(pick), "deletion": curve,
            "rank_correlation": explain.rank_correlation(maps, again, x[pick]),
            "agreement": explain.neighbour_agreement(clf, x, k=5, index=index), "n_agreement": len(x),
            "index_seconds": index_seconds, "latency": {k: percentiles(v) for k, v in times.items()}}


def explain_rows(results: dict, cells: list[Cell]) -> dict:
    cell = next((c for c in cells if c.spec["kind"] == "explain"), None)
    got = results["cells"].get("explain") if cell else None
    return got if got and got.get("spec") == cell.spec else {}


def explain_areas(expl: dict) -> tuple[float, float]:
    """The mean probability left over k = 1-50 % of the ink blanked: salient, random."""
    d = expl["deletion"]
    return d["start"] - float(np.mean(d["salient"])), d["start"] - float(np.mean(d["random"]))


def explain_table(expl: dict) -> str:
    d = expl["deletion"]
    rows = [[f"deletion, {k} % of the ink", f"{s:.3f}", f"{r:.3f}", ratio(s, r)]
            for k, s, r in zip(d["k"], d["salient"], d["random"]) if k in (1, 2, 5, 10, 20, 50)]
    salient, random = explain_areas(expl)
    rows.append(["deletion, area (probability left, mean over k)", f"{salient:.3f}", f"{random:.3f}",
                 ratio(salient, random)])
    lat = expl["latency"]
    rows += [["randomised last layers: rank correlation of maps", f"{expl['rank_correlation']:.3f}", "", ""],
             [f"5 nearest: majority is the top guess ({expl['n_agreement']} drawings)", f"{expl['agreement']:.1%}",
              "", ""],
             *[[f"latency, {name}: p50 / p95 ms" + (" (CPU)" if name + "_cpu" in lat else ""),
                f"{lat[name]['p50']:.1f} / {lat[name]['p95']:.1f}"
                + (f" ({lat[name + '_cpu']['p50']:.1f} / {lat[name + '_cpu']['p95']:.1f})"
                   if name + "_cpu" in lat else ""), "", ""] for name in ("saliency", "nearest", "total")],
             ["index of the training drawings: s to load or build", f"{expl['index_seconds']:.1f}", "", ""]]
    return table(["what", "salient / measured", "random", "ratio"], rows)


def explain_targets(expl: dict) -> list[list[str]]:
    if not expl:
        return []
    d, t = expl["deletion"], EXPLAIN_TARGETS
    at5 = d["k"].index(5)
    ratio5 = d["salient"][at5] / d["random"][at5] if d["random"][at5] > 0 else float("inf")
    salient, random = explain_areas(expl)
    p95 = expl["latency"]["total"]["p95"]
    n = f"{expl['n_drawings']} test drawings"
    return [[f"explain: deletion at 5 % of the ink, salient fall >= {t['deletion_ratio_5']:g}x random",
             f"{ratio5:.2f}x", "PASS" if ratio5 >= t["deletion_ratio_5"] else "FAIL", n],
            ["explain: area under the salient deletion curve below the random one's", f"{salient:.3f} vs {random:.3f}",
             "PASS" if salient < random else "FAIL", n],
            [f"explain: rank correlation with re-initialised last layers < {t['rank_correlation']:g}",
             f"{expl['rank_correlation']:.3f}",
             "PASS" if expl["rank_correlation"] < t["rank_correlation"] else "FAIL", n],
            [f"explain: 5 nearest training drawings' majority is the top guess >= {t['agreement']:.0%}",
             f"{expl['agreement']:.1%}", "PASS" if expl["agreement"] >= t["agreement"] else "FAIL",
             f"{expl['n_agreement']} test drawings"],
            [f"explain: explanation p95 < {t['latency_p95_ms']:g} ms (1 thread)", f"{p95:.1f} ms",
             "PASS" if p95 < t["latency_p95_ms"] else "FAIL", f"n={expl['latency']['total']['n']}"]]


# --- the demo section -------------------------------------------------------------------------------------------

DEMO_COMMAND = [sys.executable, "-m", "drawai.jobs", "demo", "--fresh"]  # what `make demo` runs, always from scratch


def demo_cell() -> Cell:
    return Cell("demo", {"format": FORMAT, "kind": "demo", "jobs": json.loads(json.dumps(jobs.DEMO)),
                         "classifier": asdict(TrainConfig()), "data": data.sample_info()["sha256"],
                         "target_s": jobs.DEMO_TARGET_S})


def demo_measure(spec: dict, out: Path, progress: bool) -> dict:
    """The demo's command in a fresh process, its runs under `out`: its wall time from start to end, and each
    job's from the demo's record (demo.json). With `progress` its lines go to the terminal as `make demo` shows
    them."""
    runs = out / "demo-runs"
    started = time.perf_counter()
    done = subprocess.run(DEMO_COMMAND, cwd=ROOT, env={**os.environ, "DRAWAI_RUNS": str(runs)}, text=True,
                          stdout=None if progress else subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE)
    wall = time.perf_counter() - started
    if done.returncode:
        said = (done.stderr or "").strip().splitlines()[-1:]
        raise BenchError(f"the demo stopped with exit code {done.returncode}{': ' + said[0] if said else ''}")
    record = json.loads(sorted(runs.glob("demo/*/demo.json"))[-1].read_text())
    return {"wall_seconds": round(wall, 1), "jobs": {name: e["wall_seconds"] for name, e in record["jobs"].items()},
            "cpus": os.cpu_count(), "runs": shown_path(runs)}


def demo_rows(results: dict, cells: list[Cell]) -> dict:
    cell = next((c for c in cells if c.spec["kind"] == "demo"), None)
    got = results["cells"].get("demo") if cell else None
    return got if got and got.get("spec") == cell.spec else {}


def demo_table(demo: dict) -> str:
    rows = [[f"`{name}` job", f"{seconds:.0f}"] for name, seconds in demo["jobs"].items()]
    rows.append(["`make demo`, start to end", f"{demo['wall_seconds']:.0f}"])
    return table(["what", "wall s"], rows)


def demo_targets(demo: dict) -> list[list[str]]:
    if not demo:
        return []
    target, seconds = demo["spec"]["target_s"], demo["wall_seconds"]
    load = demo.get("load_average", [])
    note = f"{demo['cpus']} CPUs" + (f", load average {min(load):.1f}-{max(load):.1f}" if load else "")
    return [[f"demo: `make demo` in at most {target // 60} minutes of wall time on 2 idle cores", f"{seconds:.0f} s",
             "PASS" if seconds <= target else "FAIL", note]]


# --- command line -----------------------------------------------------------------------------------------------

def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in allowed]
    if unknown or not items:
        raise BenchError(f"unknown {what} {unknown or text!r}; choose from {', '.join(allowed)}")
    return items


def options_from(args) -> dict:
    defaults = QUICK if args.quick else FULL
    options = {
        "quick": args.quick,
        "only": (parse_list(args.only, SECTIONS, "section") if args.only
                 else [s for s in SECTIONS if not (args.quick and s == "demo")]),  # quick: minutes, not ten more
        "seeds": args.seeds if args.seeds is not None else defaults["seeds"],
        "categories": (parse_list(args.categories, CATEGORY_SETS, "category set") if args.categories
                       else defaults["categories"]),
        "recipes": parse_list(args.recipes, list(RECIPE_NAMES), "recipe") if args.recipes else defaults["recipes"],
        "epochs": args.epochs if args.epochs is not None else defaults["epochs"],
        "reps": args.reps if args.reps is not None else defaults["reps"],
    }
    for name in ("seeds", "epochs", "reps"):
        if options[name] is not None and options[name] < 1:
            raise BenchError(f"--{name} must be at least 1, got {options[name]}")
    if "latency" in options["only"] and options["reps"] <= WARMUP // 2:
        raise BenchError(f"--reps must be more than {WARMUP // 2} to give a p95")
    return options


def find_unfinished(root: Path, options: dict) -> Path | None:
    """The newest bench run under `root` with the same options that did not finish: `make bench` again resumes it."""
    for path in sorted(root.glob("*/results.json"), reverse=True):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if results.get("finished"):
            return None
        if results.get("options") == options:
            return path.parent
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drawai.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, classic10, 5 epochs, 100 drawings for latency")
    ap.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--seeds", type=int, help="training seeds per recipe (default 3; quick 1)")
    ap.add_argument("--categories", help="comma-separated: all, classic10 (default both; quick classic10)")
    ap.add_argument("--recipes", help=f"comma-separated: {', '.join(RECIPE_NAMES)} "
                                      f"(default {','.join(DEFAULT_RECIPES)})")
    ap.add_argument("--epochs", type=int, help="train every recipe this many epochs (the targets then do not apply)")
    ap.add_argument("--reps", type=int, help="drawings timed per model for latency (default 500; quick 100)")
    ap.add_argument("--out", type=Path, help="results folder; an existing one is resumed "
                                             "(default: the newest unfinished run with these options, or a new one)")
    ap.add_argument("--fresh", action="store_true", help="start a new run rather than resume an unfinished one")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    out = args.out
    try:
        options = options_from(args)
        root = jobs.RUNS / "bench"
        out = out or (None if args.fresh else find_unfinished(root, options))
        if out is None:
            out = new_run_folder(root, "-quick" if options["quick"] else "")
        cells = plan(options)
        print(f"bench: {len(cells)} cells -> {out}", file=sys.stderr)
        results, failures = run(cells, out, options, progress=not args.no_progress)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: what was measured is in {out}; run the same command to go on", file=sys.stderr)
        return 130
    print(report(results, cells))
    print(f"results: {out / 'results.json'}, {out / 'results.md'}", file=sys.stderr)
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
