"""The benchmark behind the README's figures: accuracy, latency and memory, on this machine, in one run.

    python -m drawai.bench                        # `make bench`: everything, 3 seeds (hours on 2 cores)
    python -m drawai.bench --quick                # 1 seed, classic10, 5 epochs, fewer repetitions (~3 min + ~2 for gan)
    python -m drawai.bench --only gan             # sections: accuracy, latency, gan, dashboard, scale, demo, explain
    python -m drawai.bench --out runs/bench/X     # resume that run: cells measured there are skipped

Every figure is set against a baseline measured in the same run (the original draw-ai MLP), because
absolute times on a shared machine mean little; the load average is recorded with every cell.

- Accuracy: each recipe trained on the shared split (`data.train_test` of the embedded sample),
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
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from drawai import jobs
from drawai.bench.cells import (
    CATEGORY_SETS,
    RECIPE_NAMES,
    SECTIONS,
    WARMUP,
    BenchError,
    Cell,
    find_unfinished,
    load_results,
    plan,
)
from drawai.bench.measurements import measure
from drawai.bench.tables import report
from drawai.io import new_run_folder, write_text
from drawai.paths import ROOT

DEFAULT_RECIPES = ("cnn", "mlp", "doodlenet-5", "doodlenet-30")
QUICK = {"seeds": 1, "categories": ["classic10"], "recipes": ["cnn", "mlp", "doodlenet-5"], "epochs": 5, "reps": 100}
FULL = {"seeds": 3, "categories": list(CATEGORY_SETS), "recipes": list(DEFAULT_RECIPES), "epochs": None, "reps": 500}


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


def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in allowed]
    if unknown or not items:
        raise BenchError(f"unknown {what} {unknown or text!r}; choose from {', '.join(allowed)}")
    return items


# --- measuring the plan cell by cell ----------------------------------------------------------------------------------

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


def save_results(out: Path, results: dict, cells: list[Cell]) -> None:
    write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text(out / "results.md", report(results, cells))


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(), "commit": commit}
