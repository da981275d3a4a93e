"""What a bench run measures: the recipes, the cells its options plan (each with the spec that decides its figures)
and results.json, where measured cells are kept. A stored cell whose spec equals the planned one is not measured again;
`FORMAT` is in every spec, so changing it has every cell measured afresh.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from drawai import bitmaps, data, jobs, model_folder
from drawai.classifier import TrainConfig
from drawai.io import file_sha256
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, ROOT
from drawai.strokes import PAD_CANVAS, PAD_SPACING

FORMAT = "drawai-bench/1"  # in every cell's spec: change it when a measurement changes, and old cells are redone
SECTIONS = ("accuracy", "latency", "gan", "dashboard", "scale", "explain", "demo")
CATEGORY_SETS = ("all", "classic10")
# classic10's 800 training drawings are 4 batches an epoch (all 345 categories: 108), so on classic10 every
# recipe trains this many times its epochs, enough steps to converge there.
CLASSIC10_EPOCH_FACTOR = 5
EXPLAIN_DRAWINGS = {"quick": 50, "full": 300}  # test drawings in the deletion and randomisation checks
WARMUP = 20  # calls before timing starts (first calls allocate and fill caches)
DASHBOARD_SESSIONS = (1, 3)  # pages open at once
GAN_CATEGORIES, GAN_PRESET = "classic10", "demo"  # the conditional vs per-label comparison
GAN_EVAL = {"n_per_class": 80, "seed": 0}  # evaluate_generator's arguments

RECIPE_NAMES = {"cnn": "draw-ai CNN", "mlp": "original MLP", "doodlenet-5": "doodleNet, 5 epochs",
                "doodlenet-30": "doodleNet, 30 epochs", "cnn-job": "draw-ai CNN, job defaults"}


class BenchError(ValueError):
    """Options that cannot make a benchmark (unknown section, recipe or category set)."""


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


# --- the plan ---------------------------------------------------------------------------------------------------------

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
                        "split_seed": data.SPLIT_SEED, "shift_seed": bitmaps.SHIFT_SEED, "data": checksum}))
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

    common = {"format": FORMAT, "split_seed": data.SPLIT_SEED, "data": data.sample_info()["sha256"], "eval": GAN_EVAL,
              "judge": file_sha256(CLASSIFIER_DIR / "model.safetensors")}
    epochs = {"epochs": options["epochs"]} if options["epochs"] else {}
    configs = {r: gan.GANConfig.from_preset(GAN_PRESET, r, **epochs).to_dict() for r in gan.RECIPES}
    # CAS trains the accuracy section's draw-ai CNN recipe, on classic10 for as many steps as it does there
    cas = asdict(replace(TrainConfig(), epochs=options["epochs"] or TrainConfig().epochs * CLASSIC10_EPOCH_FACTOR))
    cells = [Cell(f"gan/{GAN_CATEGORIES}", {**common, "kind": "gan", "categories": GAN_CATEGORIES, "preset": GAN_PRESET,
                                           "configs": configs, "epochs_overridden": bool(epochs), "cas": cas})]
    if "all" in options["categories"] and (GENERATOR_DIR / model_folder.MANIFEST).exists():
        weights = model_folder.read(GENERATOR_DIR, "generator")["weights"]["sha256"]
        cells.append(Cell("gan/shipped", {**common, "kind": "gan-shipped", "weights": weights,
                                          "path": shown_path(GENERATOR_DIR), "cas": asdict(TrainConfig())}))
    return cells


def dashboard_cell(options: dict) -> Cell:
    from drawai import dashboard

    models = {kind: dashboard.model_path(kind) for kind in ("classifier", "generator")}
    return Cell("dashboard", {
        "format": FORMAT, "kind": "dashboard", "sessions": list(DASHBOARD_SESSIONS),
        "repeats": 1 if options["quick"] else 3,  # single-session page loads (each a fresh kernel)
        "models": {kind: {"path": str(path), "exists": (path / "manifest.json").exists(),
                          "manifest_sha256": file_sha256(path / "manifest.json") if (path / "manifest.json").exists()
                          else None} for kind, path in models.items()}})


def explain_cell(options: dict) -> Cell:
    from drawai import explain

    # --quick: the model restricted to classic10, whose index of 800 training drawings builds in seconds
    return Cell("explain", {"format": FORMAT, "kind": "explain", "model": shown_path(CLASSIFIER_DIR),
                            "categories": "classic10" if options["quick"] else "all",
                            "weights": file_sha256(CLASSIFIER_DIR / "model.safetensors"),
                            "drawings": EXPLAIN_DRAWINGS["quick" if options["quick"] else "full"],
                            "reps": options["reps"], "warmup": WARMUP, "ig_steps": explain.IG_STEPS,
                            "space": explain.INDEX_FORMAT, "split_seed": data.SPLIT_SEED,
                            "data": data.sample_info()["sha256"]})


def demo_cell() -> Cell:
    return Cell("demo", {"format": FORMAT, "kind": "demo", "jobs": json.loads(json.dumps(jobs.DEMO)),
                         "classifier": asdict(TrainConfig()), "data": data.sample_info()["sha256"],
                         "target_s": jobs.DEMO_TARGET_S})


def shown_path(path: Path) -> str:
    """Relative to the repository when inside it (as `ROOT / path` reads it back)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- results.json -----------------------------------------------------------------------------------------------------

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
