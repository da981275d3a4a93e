"""The fight: the GAN draws a label, the classifier guesses it, and the score is kept. And the question the
original draw-ai's README raised and never measured: do the GAN's drawings help train the classifier?

- `Referee`: the two models on one category set. The generator draws one of `labels`; the classifier
  picks one of the same `labels` (its probabilities restricted to them and renormalised), so a
  345-category classifier can judge a 10-category generator. One round is `draw` then `judge`;
  `fight` and `widgets.FightArena` both play through it.
- `fight(generator, classifier, labels, rounds, seed)` -> `FightResult`: per label the top-1 win rate,
  the top-5 rate, the mean confidence in the requested label and the most common wrong guess; the
  overall score; the best and worst labels; `.table()` prints it.
- `augmentation_experiment(generator, train_set, test_set, ks, seeds, config)` -> `AugmentationResult`:
  the classifier trained on the real training split plus k generated drawings per class, for every k
  and seed, scored on the real test split and on its rendering-shifted copy; mean and 95 % confidence
  interval per k, the paired difference from k=0, and `.conclusion()` in words.

A generator is anything with `.categories` and `.generate(labels, n, seed)` -> canonical float (N, 28, 28)
in [0, 1] (`drawai.gan`'s models); a classifier anything with `.categories` and
`.probabilities(images, canonical=True)` (`drawai.classifier.Classifier`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from drawai import bitmaps, classifier, seeds
from drawai import categories as cats
from drawai.checks import is_whole
from drawai.data import Drawings
from drawai.io import write_json


class FightError(ValueError):
    """Bad input to a fight or to the augmentation experiment: models that don't fit, bad counts."""


# --- the referee: one category set for both models ----------------------------------------------------------

def playable_labels(generator, clf, labels=None) -> list[str]:
    """The labels a fight is played on, checked against both models (default: the generator's categories)."""
    _check_model(generator, "generator", ("categories", "generate"))
    _check_model(clf, "classifier", ("categories", "probabilities"))
    drawn, known = list(generator.categories), list(clf.categories)
    try:
        names = drawn if labels is None else cats.resolve(labels)
    except cats.UnknownCategoryError as e:
        raise FightError(str(e)) from None
    check_generator_draws(generator, names)
    unknown = [n for n in names if n not in known]
    if unknown:
        common = [n for n in drawn if n in known]
        raise FightError(
            f"the two models were trained on category sets that don't fit: the classifier ({len(known)} "
            f"categories) does not know {unknown[:10]}{' ...' if len(unknown) > 10 else ''} "
            + (f"(the generator draws {len(drawn)}); pass labels= with the {len(common)} categories both know"
               if len(common) >= 2 else f"and the models have {len(common)} categories in common"))
    if len(names) < 2:
        raise FightError(f"a fight needs at least two labels (with one the classifier cannot lose), got {names}")
    return names


def check_generator_draws(generator, names) -> None:
    _check_model(generator, "generator", ("categories", "generate"))
    drawn = list(generator.categories)
    missing = [n for n in names if n not in drawn]
    if missing:
        raise FightError(f"the generator draws {len(drawn)} categories and does not know {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}; it knows {_some(drawn)}")


def _check_model(model, role: str, needs: tuple[str, ...]) -> None:
    missing = [name for name in needs if not hasattr(model, name)]
    if missing:
        raise FightError(f"the {role} ({type(model).__name__}) has no {' or '.join(missing)}: "
                         f"expected a drawai.{'gan' if role == 'generator' else 'classifier'} model")


def _some(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


class Referee:
    """The generator and the classifier on one category set, `labels` (checked by `playable_labels`).

    Labels are passed around as indices into `self.labels`.
    """

    def __init__(self, generator, clf, labels=None):
        self.labels = playable_labels(generator, clf, labels)
        self.generator, self.classifier = generator, clf
        known = list(clf.categories)
        self.columns = np.array([known.index(n) for n in self.labels])

    def draw(self, requested: np.ndarray, seed: int) -> np.ndarray:
        """One generated drawing per requested label index -> canonical float32 (N, 28, 28)."""
        requested = np.asarray(requested)
        images = self.generator.generate([self.labels[i] for i in requested], 1, seed=int(seed))
        x, _ = bitmaps.as_float_images(images)
        if x.shape != (len(requested), bitmaps.SIZE, bitmaps.SIZE):
            raise FightError(f"the generator returned shape {x.shape} for {len(requested)} drawings; "
                             f"expected ({len(requested)}, 28, 28)")
        return x

    def judge(self, images: np.ndarray) -> np.ndarray:
        """The classifier's probabilities over `self.labels` (N, len(labels)), renormalised.

        Generated drawings are in the canonical form already, so they go to the model as they are
        (a blank drawing is a valid input here, not an error: it is a round the generator loses).
        """
        p = np.atleast_2d(np.asarray(self.classifier.probabilities(images, canonical=True), np.float64))
        p = p[:, self.columns]
        total = p.sum(1, keepdims=True)
        return np.where(total > 0, p / np.where(total > 0, total, 1), 1 / len(self.labels))


# --- the fight: scored ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelScore:
    label: str
    rounds: int
    win_rate: float  # top-1: the classifier named the requested label
    top5_rate: float
    confidence: float  # mean probability the classifier gave the requested label
    wrong_guess: str | None  # its most common wrong guess (None: it never lost this label)
    wrong_guess_rate: float  # the fraction of this label's rounds that went to that guess


@dataclass(frozen=True)
class FightResult:
    """Every round of a fight: what was asked, what was drawn, what the classifier answered."""

    labels: tuple[str, ...]
    requested: np.ndarray  # (rounds,) index into labels
    probabilities: np.ndarray  # (rounds, len(labels)) the classifier's, over labels
    images: np.ndarray  # (rounds, 28, 28) the generated drawings, canonical float32
    seed: int

    @property
    def rounds(self) -> int:
        return len(self.requested)

    @property
    def guessed(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    @property
    def wins(self) -> np.ndarray:
        return self.guessed == self.requested

    @property
    def top5(self) -> np.ndarray:
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :5]
        return (order == self.requested[:, None]).any(1)

    @property
    def confidence(self) -> np.ndarray:
        """The probability given to the requested label, per round."""
        return self.probabilities[np.arange(self.rounds), self.requested]

    @property
    def score(self) -> float:
        """The overall top-1 win rate."""
        return float(self.wins.mean())

    @property
    def chance(self) -> float:
        return 1 / len(self.labels)

    def per_label(self) -> list[LabelScore]:
        wins, top5, conf, guessed = self.wins, self.top5, self.confidence, self.guessed
        rows = []
        for i, name in enumerate(self.labels):
            mine = self.requested == i
            n = int(mine.sum())
            if n == 0:
                continue
            lost = Counter(guessed[mine & ~wins].tolist()).most_common(1)
            rows.append(LabelScore(name, n, float(wins[mine].mean()), float(top5[mine].mean()),
                                   float(conf[mine].mean()), self.labels[lost[0][0]] if lost else None,
                                   lost[0][1] / n if lost else 0.0))
        return rows

    def ranked(self) -> list[LabelScore]:
        """Labels from the worst to the best (win rate, then confidence)."""
        return sorted(self.per_label(), key=lambda s: (s.win_rate, s.confidence))

    def worst(self, n: int = 5) -> list[LabelScore]:
        return self.ranked()[:n]

    def best(self, n: int = 5) -> list[LabelScore]:
        return self.ranked()[::-1][:n]

    def summary(self) -> dict:
        """The headline numbers, JSON-ready (for metrics.json)."""
        return {"labels": len(self.labels), "rounds": self.rounds, "seed": self.seed, "score": self.score,
                "top5": float(self.top5.mean()), "confidence": float(self.confidence.mean()), "chance": self.chance,
                "worst": [s.label for s in self.worst()], "best": [s.label for s in self.best()]}

    def table(self, rows: list[LabelScore] | None = None) -> str:
        """A plain-text table, worst labels first (all of them unless `rows` is given), and the overall line."""
        rows = self.ranked() if rows is None else rows
        width = max([len(s.label) for s in rows] + [len("label")]) + 2
        head = f"{'label':<{width}}{'rounds':>7}{'top-1':>8}{'top-5':>8}{'confidence':>12}   most common wrong guess"
        lines = [head, "-" * len(head)]
        for s in rows:
            wrong = f"{s.wrong_guess} ({s.wrong_guess_rate:.0%})" if s.wrong_guess else "-"
            lines.append(f"{s.label:<{width}}{s.rounds:>7}{s.win_rate:>8.0%}{s.top5_rate:>8.0%}"
                         f"{s.confidence:>12.2f}   {wrong}")
        lines += ["-" * len(head),
                  f"{'overall':<{width}}{self.rounds:>7}{self.score:>8.0%}{self.top5.mean():>8.0%}"
                  f"{self.confidence.mean():>12.2f}   (chance {self.chance:.1%}, {len(self.labels)} labels)"]
        return "\n".join(lines)


def check_count(name: str, value, low: int = 1) -> int:
    """`value` as an int, or FightError("<name> must be an integer >= <low>, ...")."""
    if not is_whole(value, low):
        raise FightError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def fight(generator, clf, labels=None, rounds: int = 1000, seed: int = 0, batch: int = 1000,
          progress: bool = False) -> FightResult:
    """Play `rounds` rounds: the generator draws a label, the classifier names one of `labels`.

    `labels`: a preset, a list of names or None (the generator's categories); the classifier chooses
    among the same labels. Rounds are spread evenly over the labels (each gets rounds // len(labels)
    or one more), in a random order; `seed` decides the order and the generator's noise.
    Everything is checked before a drawing is made.
    """
    rounds, seed, batch = check_count("rounds", rounds), check_count("seed", seed, 0), check_count("batch", batch)
    referee = Referee(generator, clf, labels)
    n = len(referee.labels)
    if rounds < n:
        raise FightError(f"{rounds} rounds for {n} labels: every label needs at least one round (rounds >= {n})")
    rng = seeds.rng(seed)
    extra = rng.choice(n, rounds % n, replace=False)
    requested = rng.permutation(np.concatenate([np.repeat(np.arange(n), rounds // n), extra]))
    images, probs = [], []
    for start in tqdm(range(0, rounds, batch), desc="fight", unit="batch", disable=not progress):
        chunk = requested[start:start + batch]
        drawn = referee.draw(chunk, seed=int(rng.integers(2**31)))
        images.append(drawn)
        probs.append(referee.judge(drawn))
    return FightResult(tuple(referee.labels), requested, np.concatenate(probs), np.concatenate(images), seed)


# --- the augmentation experiment -------------------------------------------------------------------------------------

def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its confidence interval (Student's t over the values; nan for one value)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()) if len(x) else float("nan"), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(half)


def generated_drawings(generator, category_names, n: int, seed: int) -> tuple[Drawings, int]:
    """`n` generated drawings per category, kept in the canonical form the generator made them in.

    They go to `classifier.train(extra_canonical=...)` as they are: as uint8 bitmaps through the
    training set's own `to_canonical` they would be re-centred and re-thinned, and would change far more
    than real drawings do (docs/fight.md, "The augmentation experiment").
    Drawings that are not line drawings (blank, or mostly ink) are left out: returns how many.
    """
    names = list(category_names)
    x, _ = bitmaps.as_float_images(generator.generate(names, n, seed=seed))
    labels = np.repeat(np.arange(len(names)), n)
    keep = bitmaps.readable(x)
    return Drawings(x[keep], labels[keep], tuple(names), f"generated, canonical ({type(generator).__name__})"), \
        len(x) - len(keep)


def first_per_class(drawings: Drawings, k: int) -> Drawings:
    """The first `k` drawings of every class (fewer where a class has fewer)."""
    pick = np.concatenate([np.flatnonzero(drawings.labels == c)[:k] for c in range(len(drawings.categories))])
    return drawings.subset(np.sort(pick))


@dataclass(frozen=True)
class AugmentationResult:
    """One run per (k, seed): top-1 on the real test split and on its rendering-shifted copy."""

    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    runs: tuple[dict, ...]  # k, seed, top1, shifted_top1, n_generated, n_train, train_cpu_seconds

    def values(self, metric: str, k: int) -> np.ndarray:
        """`metric` of the runs with this k, in the order of `seeds`."""
        by_seed = {r["seed"]: r[metric] for r in self.runs if r["k"] == k}
        return np.array([by_seed[s] for s in self.seeds if s in by_seed])

    def summary(self) -> list[dict]:
        """Per k and metric: mean, 95 % CI, and the paired difference from k=0 (same seeds) with its CI."""
        rows = []
        for k in self.ks:
            added = [r.get("n_generated", np.nan) for r in self.runs if r["k"] == k]
            row = {"k": k, "runs": len(added), "added": float(np.mean(added))}  # generated drawings actually used
            for metric in ("top1", "shifted_top1"):
                mean, half = mean_ci(self.values(metric, k))
                row[metric] = {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half}
                if 0 in self.ks and k != 0:
                    diff = self._paired(metric, k)
                    d_mean, d_half = mean_ci(diff)
                    row[metric]["vs_k0"] = {"mean": d_mean, "ci95": d_half, "low": d_mean - d_half,
                                            "high": d_mean + d_half}
            rows.append(row)
        return rows

    def _paired(self, metric: str, k: int) -> np.ndarray:
        base = {r["seed"]: r[metric] for r in self.runs if r["k"] == 0}
        return np.array([r[metric] - base[r["seed"]] for r in self.runs if r["k"] == k and r["seed"] in base])

    def table(self) -> str:
        cols = (f"{'real test top-1 [95 % CI]':<26}", f"{'vs k=0 (paired)':<26}",
                f"{'shifted top-1 [95 % CI]':<26}", "vs k=0 (paired)")
        head = f"{'k per class':>11}{'added':>7}{'runs':>6}   " + "".join(cols)
        lines = [head, "-" * len(head)]
        for row in self.summary():
            cells = []
            for metric in ("top1", "shifted_top1"):
                m = row[metric]
                cells.append(f"{m['mean']:6.1%} [{m['low']:6.1%}, {m['high']:6.1%}]".ljust(26))
                d = m.get("vs_k0")
                cells.append((f"{100 * d['mean']:+5.1f} pt [{100 * d['low']:+5.1f}, {100 * d['high']:+5.1f}]"
                              if d else "").ljust(26))
            lines.append(f"{row['k']:>11}{row['added']:>7.0f}{row['runs']:>6}   " + "".join(cells).rstrip())
        return "\n".join(lines)

    def conclusion(self) -> str:
        """What the numbers support, in words: a gain or a loss only where the paired 95 % CI excludes zero."""
        if 0 not in self.ks or len(self.ks) < 2:
            return "No conclusion: the experiment needs k=0 (the real training split alone) and at least one k > 0."
        lines = []
        names = {"top1": "real test split", "shifted_top1": "rendering-shifted test split"}
        for metric, name in names.items():
            verdicts = []
            for row in self.summary():
                d = row[metric].get("vs_k0")
                if d is None:
                    continue
                if not np.isfinite(d["ci95"]):
                    verdict = "unknown (one seed)"
                elif d["low"] > 0:
                    verdict = "better"
                elif d["high"] < 0:
                    verdict = "worse"
                else:
                    verdict = "no measurable difference"
                verdicts.append((row["k"], d, verdict))
            detail = "; ".join(f"k={k}: {100 * d['mean']:+.1f} points [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] "
                               f"-> {v}" for k, d, v in verdicts)
            kinds = {v for _, _, v in verdicts}
            if kinds == {"better"}:
                summary = "generated drawings helped at every k tried"
            elif "better" in kinds and "worse" not in kinds:
                summary = "generated drawings helped at some k, and hurt at none"
            elif "worse" in kinds and "better" not in kinds:
                summary = "generated drawings made the classifier worse" + ("" if kinds == {"worse"} else " at some k")
            elif kinds == {"no measurable difference"}:
                summary = "no measurable effect: every 95 % interval of the change includes zero"
            else:
                summary = "mixed: better at some k, worse at others"
            lines.append(f"On the {name}: {summary} ({detail}).")
        base = self.summary()[self.ks.index(0)]["top1"]
        lines.append(f"Baseline (real drawings only): {base['mean']:.1%} top-1 on the real test split, "
                     f"{len(self.seeds)} seeds; differences are paired by seed (the same seed trains with and "
                     f"without generated drawings), intervals are Student's t.")
        return "\n".join(lines)


def check_ks_and_seeds(ks, seeds) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(ks, int | str) or not len(ks):
        raise FightError(f"ks must be a non-empty list of counts per class, e.g. (0, 40, 80, 160), got {ks!r}")
    ks = tuple(check_count("every k", k, 0) for k in ks)
    if isinstance(seeds, int | str) or len(seeds) < 2:
        raise FightError(f"seeds must list at least two seeds (a confidence interval needs two runs), got {seeds!r}")
    seeds = tuple(check_count("every seed", s, 0) for s in seeds)
    for name, values in (("ks", ks), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise FightError(f"{name} has repeated values: {list(values)}")
    return ks, seeds


def augmentation_experiment(generator, train_set: Drawings, test_set: Drawings, ks=(0, 40, 80, 160),
                            seeds=(0, 1, 2), config: classifier.TrainConfig | None = None,
                            results_path: str | os.PathLike | None = None, progress: bool = True,
                            on_run=None) -> AugmentationResult:
    """Train the classifier on `train_set` plus k generated drawings per class, for every k and seed.

    Every run is scored on the real `test_set` and on the same drawings re-rendered like Google's
    numpy_bitmap files (`bitmaps.numpy_bitmap_style`, seed 0: the rendering-shifted test). The seed sets
    the classifier's initialisation and batch order (`config.seed` is replaced) and the generated
    drawings: each seed draws max(ks) per class once, and k takes the first k of them, so the runs of
    one seed differ only in k. `config` defaults to `TrainConfig(epochs=15)`.

    The generator must not have seen `test_set` (train it on the same split's training part).
    With `results_path` (a JSON file), every finished run is written there and a rerun skips it.
    `on_run(done, total, run)` is called after every run (`run` is its row: k, seed, top1, ...), e.g. to print it.
    """
    ks, seeds = check_ks_and_seeds(ks, seeds)
    config = config or classifier.TrainConfig(epochs=15)
    if not isinstance(config, classifier.TrainConfig):
        raise FightError(f"config must be a drawai.classifier.TrainConfig, got {type(config).__name__}")
    if tuple(train_set.categories) != tuple(test_set.categories):
        raise FightError("the training and test drawings have different categories")
    check_generator_draws(generator, train_set.categories)
    settings = {"ks": list(ks), "seeds": list(seeds), "config": asdict(replace(config, seed=0)),
                "categories": list(train_set.categories), "train_checksum": train_set.checksum,
                "n_train": len(train_set), "n_test": len(test_set), "generator": _identity(generator)}
    settings = json.loads(json.dumps(settings))  # as it reads back from the file (tuples become lists)
    runs = _read_results(Path(results_path), settings) if results_path else []
    done = {(r["k"], r["seed"]) for r in runs}

    # Both test sets in the canonical form once (evaluate then takes them as they are).
    real = Drawings(bitmaps.to_canonical(test_set.images), test_set.labels, test_set.categories, test_set.source)
    shifted = bitmaps.rendering_shifted(test_set)
    shifted = Drawings(bitmaps.to_canonical(shifted.images), shifted.labels, shifted.categories, shifted.source)
    todo = [(k, s) for s in seeds for k in ks if (k, s) not in done]
    bar = tqdm(total=len(ks) * len(seeds), initial=len(ks) * len(seeds) - len(todo), desc="augmentation",
               unit="run", disable=not progress)
    generated, unreadable, generated_seed = None, 0, None
    for done, (k, seed) in enumerate(todo, start=len(ks) * len(seeds) - len(todo) + 1):
        if max(ks) and generated_seed != seed:
            generated, unreadable = generated_drawings(generator, train_set.categories, max(ks), seed)
            generated_seed = seed
            if unreadable:
                warnings.warn(f"{unreadable} of the generator's {max(ks) * len(train_set.categories)} drawings "
                              f"(seed {seed}) are not line drawings (blank, or mostly ink): left out", stacklevel=2)
        extra = first_per_class(generated, k) if k else None
        t0 = time.process_time()
        clf, _ = classifier.train(train_set, replace(config, seed=seed), progress=False, extra_canonical=extra)
        n_generated = len(extra) if k else 0
        runs.append({"k": k, "seed": seed, "top1": classifier.evaluate(clf, real, canonical=True)["top1"],
                     "shifted_top1": classifier.evaluate(clf, shifted, canonical=True)["top1"],
                     "n_generated": n_generated, "unreadable_generated": unreadable if k else 0,
                     "n_train": len(train_set) + n_generated, "train_cpu_seconds": round(time.process_time() - t0, 1)})
        if results_path:
            write_json(Path(results_path), {"settings": settings, "runs": runs})
        bar.update()
        bar.set_postfix(k=k, seed=seed, top1=round(runs[-1]["top1"], 3))
        if on_run:
            on_run(done, len(ks) * len(seeds), runs[-1])
    bar.close()
    order = {(k, s): i for i, (s, k) in enumerate((s, k) for s in seeds for k in ks)}
    runs = sorted(runs, key=lambda r: order[(r["k"], r["seed"])])
    return AugmentationResult(ks, seeds, tuple(runs))


def _identity(generator) -> str:
    """What identifies the generator in a results file: its weights' SHA-256 when it has a manifest."""
    manifest = getattr(generator, "manifest", None) or {}
    return manifest.get("weights", {}).get("sha256") or f"{type(generator).__name__}:{list(generator.categories)[:3]}"


def _read_results(path: Path, settings: dict) -> list[dict]:
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FightError(f"{path} is not a results file of this experiment ({e}); choose another path") from None
    if not isinstance(saved, dict) or saved.get("settings") != settings:
        raise FightError(f"{path} holds results made with other settings (models, data, ks, seeds or training); "
                         "choose another path or delete it")
    return list(saved["runs"])
