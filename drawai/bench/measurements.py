"""Measuring one cell: `measure` hands each kind of cell to its measurement. Each runs in a fresh process
(spawned, not forked: nothing shared with the bench, its own peak memory); the dashboard, scale and demo sections
start servers and commands of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from drawai import bitmaps, classifier, data, seeds
from drawai import categories as cats
from drawai.bench.browser import dashboard_measure
from drawai.bench.cells import WARMUP, BenchError, Cell, shown_path
from drawai.classifier import TrainConfig
from drawai.io import write_text
from drawai.paths import CLASSIFIER_DIR, ROOT
from drawai.strokes import render_strokes, traced_strokes

DEMO_COMMAND = [sys.executable, "-m", "drawai.jobs", "demo", "--fresh"]  # what `make demo` runs, always from scratch


def checkpoint_dir(out: Path, name: str, spec: dict) -> Path:
    """Where a cell's training resumes from: named for the cell and its spec, so a changed spec starts afresh."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return out / "checkpoints" / f"{name.replace('/', '-')}-{digest}"


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
    if spec["kind"] in ("gan", "gan-shipped"):
        run_root = checkpoint_dir(out, cell.key if spec["kind"] == "gan" else "gan-shipped", spec)
        process = gan_comparison_process if spec["kind"] == "gan" else shipped_generator_process
        result = in_fresh_process(process, spec, str(run_root))
        shutil.rmtree(run_root, ignore_errors=True)
        return result
    if spec["kind"] == "accuracy":
        categories = spec["categories"]
        if categories not in cache:
            cache[categories] = shifted_test(categories)
        checkpoints = checkpoint_dir(out, cell.key, spec)
        result = in_fresh_process(accuracy_process, categories, spec["config"], cache[categories], str(checkpoints),
                                  progress)
        shutil.rmtree(checkpoints, ignore_errors=True)
        return result
    # latency: the same drawings for every model, as a bitmap and as the strokes a pad would send
    if "latency_inputs" not in cache:
        _, test = data.train_test(data.load_sample("all"))
        pick = seeds.rng(0).choice(len(test), size=min(spec["reps"], len(test)), replace=False)
        images = test.images[np.sort(pick)]
        cache["latency_inputs"] = images, [traced_strokes(img) for img in tqdm(
            images, desc="tracing strokes", unit="drawing", leave=False, disable=not progress)]
    images, strokes = cache["latency_inputs"]
    rows = in_fresh_process(latency_process, spec["rows"], images, strokes)
    for name, model in tqdm(spec["rows"].items(), desc="memory", unit="process", leave=False, disable=not progress):
        rows[name]["peak_rss_mib"] = in_fresh_process(prediction_memory_process, model, images[:WARMUP],
                                                      strokes[:WARMUP])
    return {"rows": rows, "stroke_points_mean": float(np.mean([sum(len(s) for s in d) for d in strokes]))}


def in_fresh_process(fn, *args):
    """fn(*args) in a new Python process (spawned, not forked: nothing shared, its own peak RSS)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- inputs -----------------------------------------------------------------------------------------------------------

def shifted_test(categories: str) -> np.ndarray:
    """The held-out drawings re-rendered like Google's numpy_bitmap files (uint8)."""
    _, test = data.train_test(data.load_sample(categories))
    return bitmaps.rendering_shifted(test).images


# --- the measurements -------------------------------------------------------------------------------------------------

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
    train_set, test_set = data.train_test(data.load_sample(categories))
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
    train_set, test_set = data.train_test(data.load_sample(spec["categories"]))
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
    train_set, test_set = data.train_test(data.load_sample(names))
    judge = Classifier.load(CLASSIFIER_DIR, categories=names)
    figures = metrics.evaluate_generator(model, judge, train_set, test_set, **spec["eval"]).summary()
    figures |= metrics.classification_accuracy_score(model, train_set, test_set, TrainConfig(**spec["cas"]),
                                                     Path(run_root) / "cas", progress=False)
    made = model.manifest.get("metrics", {})

    def both(key: str, refiner_key: str) -> float | None:  # the GAN's epochs and its refiner's, as training timed them
        return made[key] + made.get(refiner_key, 0) if made.get(key) is not None else None

    return {**figures, "recipe": model.recipe, "categories": len(names), "epochs": made.get("epochs"),
            "cpu_seconds": both("train_cpu_seconds", "refiner_cpu_seconds"),
            "train_seconds": both("train_seconds", "refiner_seconds")}


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
    pick = np.sort(seeds.rng(0).choice(len(x), size=min(spec["drawings"], len(x)), replace=False))
    with torch.no_grad():
        guesses = explain.scorer(clf)(torch.from_numpy(x[pick])[:, None]).argmax(1).numpy()
    maps = np.stack([explain.saliency(clf, x[i], label=int(c), canonical=True) for i, c in zip(pick, guesses)])
    curve = explain.deletion_curve(clf, x[pick], maps, guesses)
    shuffled = explain.randomised(clf)
    again = np.stack([explain.saliency(shuffled, x[i], label=int(c), canonical=True) for i, c in zip(pick, guesses)])
    times = {name: [] for name in ("saliency", "nearest", "total", "saliency_cpu", "nearest_cpu", "total_cpu")}
    timed = seeds.rng(1).choice(len(x), size=min(spec["reps"] + spec["warmup"], len(x)), replace=False)
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
