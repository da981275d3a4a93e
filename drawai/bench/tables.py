"""results.md: a bench run's report in Markdown, from results.json and the planned cells: the prose that says how
each section was measured, its tables, and every target with its PASS or FAIL. A stored cell measured with another
spec than the planned one is not reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from drawai import bitmaps, data, metrics
from drawai import categories as cats
from drawai.bench.cells import (
    CATEGORY_SETS,
    GAN_CATEGORIES,
    GAN_EVAL,
    GAN_PRESET,
    RECIPE_NAMES,
    WARMUP,
    Cell,
    shown_path,
)
from drawai.paths import CLASSIFIER_DIR
from drawai.strokes import PAD_CANVAS

BASELINE = "mlp"
ARCH_NAMES = {"cnn": "draw-ai CNN", "mlp": "original MLP", "doodlenet": "doodleNet"}
DASHBOARD_TARGET_S = 10  # page load to the first interactive widget, seconds
FULL_PRESET_MINUTES = 60  # the `full` GAN preset's training (GAN and refiner epochs), wall minutes on 2 cores
EXPLAIN_TARGETS = {"deletion_ratio_5": 2.0, "rank_correlation": 0.3, "agreement": 0.75, "latency_p95_ms": 50}

GAN_STAGES = {  # row label per stage of the comparison cell
    "conditional": "conditional GAN (draw-ai)",
    "per_label_equal_epochs": "per-label DCGANs (original), equal epochs",
    "per_label_equal_cpu": "per-label DCGANs (original), equal CPU seconds",
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


def report(results: dict, cells: list[Cell]) -> str:
    """The Markdown tables, ready to paste into the README."""
    summary, lat = summarise(results, cells), measured(results, cells, "latency")
    gan, dash = gan_figures(results, cells), measured(results, cells, "dashboard")
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
                  f"(`data.split(seed={data.SPLIT_SEED})`: 80 train / 20 test per category), mean ± std over training "
                  "seeds. *Shifted*: the test drawings re-rendered like Google's numpy_bitmap files "
                  f"(`bitmaps.rendering_shifted`, seed {bitmaps.SHIFT_SEED}); *gap*: top-1 minus shifted top-1. "
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
    scale = measured(results, cells, "scale")
    if scale:
        parts += ["### Past one process\n\n`drawai.distributed.throughput` (also `python -m drawai.distributed`): "
                  f"training images/second on {scale['spec']['categories']} ({scale['spec']['per_class']} drawings a "
                  f"class, batch {scale['spec']['batch_size']}, {scale['spec']['epochs']} epochs) in 1 and 2 "
                  "processes under torchrun (gloo on 127.0.0.1), canonicalising through DataLoader workers, and end "
                  "to end from numpy_bitmap files. Every process competes for the same cores: 2 processes x 1 thread "
                  "and 1 process x 2 threads use as many; scaling efficiency = rate(2 processes) / (2 x rate(1)).",
                  scale_table(scale)]
    demo = measured(results, cells, "demo")
    if demo:
        parts += ["### Demo\n\n`make demo`'s command (`python -m drawai.jobs demo --fresh`) from start to end, every "
                  "job's kernel start-up included, with each job's share from the demo's record; its reports are "
                  f"under `{demo['runs']}`. The target is for 2 idle cores: this machine has {demo['cpus']} CPUs.",
                  demo_table(demo)]
    expl = measured(results, cells, "explain")
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


# --- the figures of the planned cells, as measured --------------------------------------------------------------------

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


def measured(results: dict, cells: list[Cell], kind: str) -> dict:
    """The stored figures of the planned cell of this kind (its key is its kind), {} when none is planned or the
    stored one was measured with another spec."""
    cell = next((c for c in cells if c.spec["kind"] == kind), None)
    got = results["cells"].get(kind) if cell else None
    return got if got and got.get("spec") == cell.spec else {}


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


def explain_areas(expl: dict) -> tuple[float, float]:
    """The mean probability left over k = 1-50 % of the ink blanked: salient, random."""
    d = expl["deletion"]
    return d["start"] - float(np.mean(d["salient"])), d["start"] - float(np.mean(d["random"]))


# --- tables -----------------------------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if not values:
        return "–"
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


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


def demo_table(demo: dict) -> str:
    rows = [[f"`{name}` job", f"{seconds:.0f}"] for name, seconds in demo["jobs"].items()]
    rows.append(["`make demo`, start to end", f"{demo['wall_seconds']:.0f}"])
    return table(["what", "wall s"], rows)


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


# --- targets ----------------------------------------------------------------------------------------------------------

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
        shipped = gan["shipped"]
        out += rows("345-class generator (published)", shipped, f"{shipped['categories']} categories")
        if shipped.get("train_seconds") is not None:
            minutes = shipped["train_seconds"] / 60
            out.append([f"345-class generator: the full preset trains in <= {FULL_PRESET_MINUTES} min",
                        f"{minutes:.1f} min", "PASS" if minutes <= FULL_PRESET_MINUTES else "FAIL",
                        "GAN and refiner epochs, as its training timed them (manifest)"])
    return out


def dashboard_targets(dash: dict) -> list[list[str]]:
    one = dash.get("rows", {}).get("dashboard", {}).get("1")
    if not one:
        return []
    seconds = float(np.median(one["seconds"]))
    ok = seconds < DASHBOARD_TARGET_S
    return [[f"dashboard: page load to first interactive widget < {DASHBOARD_TARGET_S} s", f"{seconds:.2f} s",
             "PASS" if ok else "FAIL", f"median of {len(one['seconds'])}, 1 session"]]


def demo_targets(demo: dict) -> list[list[str]]:
    if not demo:
        return []
    target, seconds = demo["spec"]["target_s"], demo["wall_seconds"]
    load = demo.get("load_average", [])
    note = f"{demo['cpus']} CPUs" + (f", load average {min(load):.1f}-{max(load):.1f}" if load else "")
    return [[f"demo: `make demo` in at most {target // 60} minutes of wall time on 2 idle cores", f"{seconds:.0f} s",
             "PASS" if seconds <= target else "FAIL", note]]


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
