"""Measures of generated drawings that need no model: pure numpy on feature vectors (or pixels).

- `frechet_distance`: FID's formula, the distance between two Gaussians fitted to two feature sets;
  with the classifier's penultimate features (`Classifier.features`) it is FID for doodles.
- `nearest_neighbours` / `memorisation_ratio`: does the generator copy its training drawings?
  Generated drawings should be about as far from the training set as unseen real drawings are.
- `precision_recall_density_coverage`: how much of what is generated looks real (precision, density) and
  how much of what is real gets generated (recall, coverage); a template per label has recall near 0.
- `evaluate_generator`: all of the above for a generator, per class, in a classifier's feature space, next
  to the same figures for real drawings measured in the same run (GAN-test accuracy, FID with a
  shuffled-label control and a real-vs-real floor, memorisation, the real-vs-real variety reference).
- `classification_accuracy_score` (CAS): a classifier trained on generated drawings alone, tested on real ones.
  `cas_drawings` draws (or reads back) what it trains on.
- `generator_targets` holds a generator to its targets, each a ratio to a reference from the same run.

Every distance function takes (N, D) arrays, or (N, H, W) images (flattened).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy import linalg

from drawai import seeds
from drawai.checks import is_whole
from drawai.io import atomic_write


class MetricInputError(ValueError):
    """Feature sets that cannot be compared: wrong shape, too few rows, NaN."""


def _features(x, name: str, min_rows: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim >= 2:
        arr = arr.reshape(len(arr), -1)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise MetricInputError(f"{name} must be (N, D) features or (N, H, W) images, got shape {np.shape(x)}")
    if len(arr) < min_rows:
        raise MetricInputError(f"{name} needs at least {min_rows} rows, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise MetricInputError(f"{name} has NaN or infinite values")
    return arr


def _same_width(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"{names} have different feature sizes: {a.shape[1]} vs {b.shape[1]}")


def frechet_distance(a, b) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to the rows of `a` and `b`.

    0 for identical sets; FID proper uses thousands of rows (the estimate is biased upward for few).
    """
    a, b = _features(a, "a", 2), _features(b, "b", 2)
    _same_width(a, b, "a and b")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # singular products (a collapsed generator) are expected and handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product (fewer rows than features): nudge both diagonals
        eps = 1e-6 * np.eye(len(cov_a))
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = root.real  # rounding leaves tiny imaginary parts
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
    return max(value, 0.0)


def pairwise_distances(a, b) -> np.ndarray:
    """Euclidean distances (len(a), len(b))."""
    a, b = _features(a, "a"), _features(b, "b")
    _same_width(a, b, "a and b")
    sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def nearest_neighbours(queries, references, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: (distance to its nearest reference row, that row's index)."""
    queries, references = _features(queries, "queries"), _features(references, "references")
    _same_width(queries, references, "queries and references")
    dist, idx = np.empty(len(queries)), np.empty(len(queries), dtype=np.int64)
    for i in range(0, len(queries), chunk):
        d = pairwise_distances(queries[i:i + chunk], references)
        idx[i:i + chunk] = d.argmin(1)
        dist[i:i + chunk] = d[np.arange(len(d)), idx[i:i + chunk]]
    return dist, idx


def memorisation_ratio(generated, train, held_out) -> float:
    """Median distance generated -> nearest training drawing, over the same for held-out real drawings.

    About 1: the generator's drawings are as novel as fresh real ones. Near 0: it copies training drawings.
    """
    gen_dist, _ = nearest_neighbours(generated, train)
    real_dist, _ = nearest_neighbours(held_out, train)
    return _median_ratio(gen_dist, real_dist)


def _median_ratio(gen_dist: np.ndarray, real_dist: np.ndarray) -> float:
    scale = float(np.median(real_dist))
    if scale == 0:
        raise MetricInputError("the held-out drawings are copies of training drawings: no scale to compare with")
    return float(np.median(gen_dist)) / scale


def _kth_neighbour_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row: the radius of its k-NN ball."""
    d = pairwise_distances(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def precision_recall_density_coverage(real, generated, k: int = 5) -> dict[str, float]:
    """Fidelity and variety of `generated` against `real` (rows are feature vectors), from k-NN balls.

    Each set's manifold is the union of balls around its rows, each reaching to its k-th nearest neighbour.
    - precision (Kynkaanniemi et al. 2019): the share of generated rows inside the real manifold;
    - recall (same paper): the share of real rows inside the generated manifold. One drawing repeated has
      balls of radius 0, so its recall is 0 however typical the drawing is;
    - density (Naeem et al. 2020): how many real balls hold each generated row, over k (about 1 when the
      two sets come from one distribution; above 1 where generated rows crowd the real modes);
    - coverage (same paper): the share of real rows whose ball holds at least one generated row. It needs
      no generated manifold, so outliers among the generated rows cannot raise it.
    Two samples of one distribution score near 1 on all four (coverage 1 - C(n-1, k) / C(n+m-1, k), Naeem's
    Lemma 2: 0.97 for 50 against 50 at k = 5).
    """
    real, generated = _features(real, "real"), _features(generated, "generated")
    _same_width(real, generated, "real and generated features")
    if not is_whole(k, 1):
        raise MetricInputError(f"k must be a positive integer, got {k!r}")
    for name, x in (("real", real), ("generated", generated)):
        if k >= len(x):
            raise MetricInputError(f"k-NN with k={k} needs more than {k} {name} rows, got {len(x)}")
    real_radius, generated_radius = _kth_neighbour_distances(real, k), _kth_neighbour_distances(generated, k)
    d = pairwise_distances(real, generated)  # (real, generated)
    in_real_ball = d <= real_radius[:, None]
    return {"precision": float(in_real_ball.any(0).mean()),
            "recall": float((d <= generated_radius[None, :]).any(1).mean()),
            "density": float(in_real_ball.sum(0).mean() / k),
            "coverage": float(in_real_ball.any(1).mean())}


# --------------------------------------------------------------------------------------------------
# A generator judged by a classifier


CLASS_FID_DIMS = 16  # per-class FID is measured on this many principal axes (see evaluate_generator)
VARIETY_K = 5  # the k of the k-NN balls behind precision, recall, density and coverage (both papers' default)
CLOSEST_PAIRS = 16  # generated drawings closest to a training drawing, kept for the notebook
GENERATE_CHUNK = 5_000  # drawings per generate() call (drawai.gan refuses more than 10,000)
MAX_PER_CLASS = 1_000
SHUFFLED_FACTOR = 0.5  # "FID well below the shuffled-label control": at most half of it
# The noises a generator is asked for by name, from clearest to most varied ("fitted": a drawai.gan model with an
# encoder): notebook 03 judges a generator at each it can draw besides its own, and the Generate tab offers them.
NAMED_NOISES = {"normal ±0.5": {"noise": "normal", "truncation": 0.5},
                "normal ±1": {"noise": "normal", "truncation": 1.0},
                "normal untruncated": {"noise": "normal", "truncation": None},
                "fitted": {"noise": "fitted", "truncation": None}}


def own_noise(generator) -> dict:
    """What `generator.generate` draws from when not told: its noise and truncation, as a NAMED_NOISES value."""
    return {"noise": getattr(generator, "noise", "normal"), "truncation": getattr(generator, "truncation", None)}


def other_noises(generator) -> dict[str, dict]:
    """The NAMED_NOISES `generator` can draw from besides its own (the fitted one only where it has one)."""
    own, drawable = own_noise(generator), getattr(generator, "noises", ("normal",))
    return {name: noise for name, noise in NAMED_NOISES.items() if noise != own and noise["noise"] in drawable}


@dataclass
class GeneratorEvaluation:
    """What `evaluate_generator` measured. Per-class arrays follow `categories`; "features" are the
    classifier's penultimate layer."""

    categories: list[str]
    n_per_class: int  # generated drawings per category
    fid_per_class: int  # of them (and of the training drawings) in each FID set: as many as the training has
    # GAN-test: the classifier's accuracy on generated drawings of each requested label, and on real test drawings
    gan_top1: float
    gan_top5: float
    gan_per_class: np.ndarray
    real_top1: float
    real_top5: float
    real_per_class: np.ndarray
    # FID pooled over the categories, all feature dimensions, against the real test drawings
    fid: float  # generated
    fid_real: float  # the floor: real training drawings, as many per class as the generated set
    # FID per class, on the class_fid_dims principal axes, against the class's real test drawings
    fid_class: np.ndarray  # the class's generated drawings
    fid_class_shuffled: np.ndarray  # the drawings generated for another class, shuffle[c]: the control
    fid_class_real: np.ndarray  # the class's real training drawings: the floor
    shuffle: np.ndarray
    class_fid_dims: int
    # memorisation: distances in feature space to the nearest training drawing
    memorisation_ratio: float  # median over generated / median over real test drawings
    generated_nn: np.ndarray  # (n generated,)
    generated_nn_index: np.ndarray  # (n generated,) index into the training set
    test_nn: np.ndarray  # (n test,)
    closest_pairs: np.ndarray  # (CLOSEST_PAIRS, 2): (generated index, training index), closest first
    # fidelity and variety per class (`precision_recall_density_coverage`): name -> (K,) values for the class's
    # generated drawings against half of its real drawings, and for the other half (the real-vs-real reference)
    variety: dict[str, np.ndarray]
    variety_real: dict[str, np.ndarray]
    variety_n: int  # drawings in each set compared (per class)
    variety_k: int
    # what was judged, label by label
    generated: np.ndarray  # (K * n_per_class, 28, 28) float32 [0, 1], canonical
    generated_labels: np.ndarray
    truncation: float | None = None  # the noise truncation generate() drew with (None: the full normal)

    def summary(self) -> dict:
        """The headline figures, JSON-ready: for the model manifest, metrics.json and the bench."""
        def r(x):
            return round(float(x), 4)

        return {
            "eval_per_class": self.n_per_class,
            "gan_test_top1": r(self.gan_top1), "gan_test_top5": r(self.gan_top5),
            "real_test_top1": r(self.real_top1), "real_test_top5": r(self.real_top5),
            "fid": r(self.fid), "fid_real_floor": r(self.fid_real),
            "fid_class_mean": r(self.fid_class.mean()), "fid_class_shuffled_mean": r(self.fid_class_shuffled.mean()),
            "fid_class_real_mean": r(self.fid_class_real.mean()), "class_fid_dims": self.class_fid_dims,
            "memorisation_ratio": r(self.memorisation_ratio),
            "generated_nn_median": r(np.median(self.generated_nn)), "test_nn_median": r(np.median(self.test_nn)),
            **{name: r(v.mean()) for name, v in self.variety.items()},
            **{f"{name}_real": r(v.mean()) for name, v in self.variety_real.items()},
            **{f"{name}_ratio": r(v.mean() / max(self.variety_real[name].mean(), 1e-12))
               for name, v in self.variety.items()},
            "variety_n": self.variety_n, "variety_k": self.variety_k,
            "truncation": self.truncation,
        }

    def per_class(self) -> dict[str, dict]:
        """category -> its figures (JSON-ready)."""
        columns = {"gan_test_top1": self.gan_per_class, "real_test_top1": self.real_per_class,
                   "fid": self.fid_class, "fid_shuffled": self.fid_class_shuffled, "fid_real": self.fid_class_real,
                   **self.variety, **{f"{name}_real": v for name, v in self.variety_real.items()}}
        return {name: {k: round(float(v[i]), 4) for k, v in columns.items()} for i, name in enumerate(self.categories)}


def evaluate_generator(generator, classifier, train_set, test_set, n_per_class: int = 80, seed: int = 0,
                       class_fid_dims: int = CLASS_FID_DIMS, truncation: float | None | str = "model",
                       k: int = VARIETY_K, noise: str = "model") -> GeneratorEvaluation:
    """Judge `generator` (`.categories`, `.generate(labels, n, seed)` -> canonical [0, 1] drawings, like
    `drawai.gan`'s) with `classifier` (a `drawai.classifier.Classifier`), against the real drawings of
    `train_set` (what it was trained on) and `test_set` (held out), both of the generator's categories.

    A classifier trained on more categories (the 345-class model judging a classic10 GAN) is restricted
    to the generator's (`Classifier.restricted_to`); one that lacks any of them is an error.

    Definitions (every distance in the classifier's feature space; generated drawings go in as they are,
    `canonical=True`, real ones through `to_canonical`):
    - GAN-test top-1/top-5: the classifier's accuracy on `n_per_class` drawings generated for each label,
      overall and per class, next to its accuracy on the real test drawings.
    - FID compares sets of equal size, because the estimate's upward bias shrinks with the set size:
      m = min(n_per_class, the smallest class's training count) generated drawings per class, and as
      many real training drawings (a seeded choice) for the real-vs-real floor, each against the real
      test drawings. Pooled FID uses all feature dimensions. Per-class FID has only a class's test
      drawings (20 per class in the sample) to compare with, too few for a covariance in 128 dimensions,
      so it is measured on the `class_fid_dims` leading principal axes of the real training features
      (fewer if a class has fewer test drawings), which hold most of their variance and keep it well
      conditioned; it is noisy per class, and means over classes.
    - Shuffled-label control: per class, the drawings generated for another class (a random derangement
      `shuffle`) against this class's test drawings. Pooled, shuffling labels changes nothing, so the
      control exists per class only. A conditional generator's per-class FID should sit near the floor
      and far below the control; what all its drawings share (say, dotted strokes) raises both alike.
    - Memorisation: each generated drawing's distance to its nearest training drawing, against the
      same for the real test drawings; `memorisation_ratio` (medians) ~1 is novel, ~0 copies.
    - Fidelity and variety (`precision_recall_density_coverage`, k-NN balls of radius to the `k`-th neighbour),
      per class: the class's real drawings (training and test) are split in two seeded halves, A and B. The
      generated drawings (as many as B holds, or `n_per_class` if fewer) are compared with A, and so is B:
      the real-vs-real reference, measured the same way in the same run. A template per label has recall
      near 0 and low coverage whatever its GAN-test; noise has high recall but low precision and coverage.

    `truncation`: passed on to `generate` (the truncation trick: a number, or None for none); "model"
    (the default) leaves it to the generator's own default. `noise` likewise ("normal" or "fitted" for a
    `drawai.gan` model with an encoder: `gan.FittedNoise`).

    Cost (2 cores): classic10 a few CPU seconds; all 345 categories about 2 CPU minutes and 2 GB.
    """
    from drawai.classifier import top_k  # torch: imported only when a classifier is at hand

    names = list(getattr(generator, "categories", None) or [])
    if len(names) < 2:
        raise MetricInputError(f"a generator is judged on at least 2 categories (the shuffled-label control "
                               f"swaps them); this one has {len(names)}")
    for what, drawings in (("train_set", train_set), ("test_set", test_set)):
        if list(drawings.categories) != names:
            raise MetricInputError(f"{what} has other categories than the generator ({len(drawings.categories)}: "
                                   f"{list(drawings.categories)[:3]}... vs {len(names)}: {names[:3]}...); "
                                   "load the data for generator.categories")
    if list(classifier.categories) != names:
        missing = [n for n in names if n not in classifier.categories]
        if missing:
            raise MetricInputError(f"the classifier does not know {len(missing)} of the generator's categories "
                                   f"({missing[:5]}): judge it with a classifier trained on all of them")
        classifier = classifier.restricted_to(names)
    if not is_whole(n_per_class, 2) or n_per_class > MAX_PER_CLASS:
        raise MetricInputError(f"n_per_class must be an integer in [2, {MAX_PER_CLASS}], got {n_per_class!r}")
    if not is_whole(class_fid_dims, 1):
        raise MetricInputError(f"class_fid_dims must be a positive integer, got {class_fid_dims!r}")
    n_classes = len(names)
    train_counts = np.bincount(train_set.labels, minlength=n_classes)
    test_counts = np.bincount(test_set.labels, minlength=n_classes)
    if train_counts.min() < 2 or test_counts.min() < 2:
        raise MetricInputError(f"every category needs at least 2 training and 2 test drawings; "
                               f"{names[int(np.argmin(np.minimum(train_counts, test_counts)))]!r} has "
                               f"{train_counts.min()} / {test_counts.min()}")
    if not is_whole(k, 1):
        raise MetricInputError(f"k must be a positive integer, got {k!r}")
    half = int(min((train_counts + test_counts).min() // 2, n_per_class))
    if half <= k:
        raise MetricInputError(f"k-NN with k={k} compares sets of more than {k} drawings, but each class's real "
                               f"drawings split in halves of {half} (n_per_class {n_per_class}, smallest class "
                               f"{(train_counts + test_counts).min()}): use a smaller k or more drawings")
    rng = seeds.rng(seed, seeds.VARIETY_HALVES)  # not the stream generate(seed) draws noise from

    # Generate, label by label, in calls the generator accepts.
    per_call = max(1, GENERATE_CHUNK // n_per_class)
    if isinstance(truncation, str) and truncation == "model":  # generate()'s own default
        options, truncation = {}, getattr(generator, "truncation", None)
    else:
        options = {"truncation": truncation}
    if noise != "model":
        options["noise"] = noise
    generated = np.concatenate([generator.generate(list(range(i, min(i + per_call, n_classes))), n_per_class, seed + i,
                                                   **options) for i in range(0, n_classes, per_call)])
    if generated.shape != (n_classes * n_per_class, 28, 28):
        raise MetricInputError(f"the generator returned shape {generated.shape} for {n_classes} labels x "
                               f"{n_per_class}; expected {(n_classes * n_per_class, 28, 28)}")
    gen_labels = np.repeat(np.arange(n_classes), n_per_class)

    # GAN-test accuracy, and the classifier on real test drawings.
    gen_probs = classifier.probabilities(generated, canonical=True)
    real_probs = classifier.probabilities(test_set.images)
    gan, real = top_k(gen_probs, gen_labels), top_k(real_probs, test_set.labels)

    f_gen = classifier.features(generated, canonical=True).astype(np.float64)
    f_train = classifier.features(train_set.images).astype(np.float64)
    f_test = classifier.features(test_set.images).astype(np.float64)

    # FID on equal-size sets: m generated and m real training drawings per class, against all test drawings.
    m = int(min(n_per_class, train_counts.min()))
    gen_sets = [np.flatnonzero(gen_labels == c)[:m] for c in range(n_classes)]
    train_sets = [np.sort(rng.choice(np.flatnonzero(train_set.labels == c), m, replace=False))
                  for c in range(n_classes)]
    test_sets = [np.flatnonzero(test_set.labels == c) for c in range(n_classes)]
    fid = frechet_distance(f_gen[np.concatenate(gen_sets)], f_test)
    fid_real = frechet_distance(f_train[np.concatenate(train_sets)], f_test)

    dims = int(min(class_fid_dims, f_train.shape[1], test_counts.min() - 1, m - 1))
    centre = f_train.mean(0)
    axes = np.linalg.svd(f_train - centre, full_matrices=False)[2][:dims].T

    def project(f):
        return (f - centre) @ axes

    order = rng.permutation(n_classes)
    shuffle = np.empty(n_classes, dtype=np.int64)
    shuffle[order] = np.roll(order, -1)  # a derangement: no class keeps its own drawings
    p_gen, p_train, p_test = project(f_gen), project(f_train), project(f_test)

    def class_fid(p, sets, source):  # class c's test drawings vs the set of class source[c]
        return np.array([frechet_distance(p[sets[source[c]]], p_test[test_sets[c]]) for c in range(n_classes)])

    same = np.arange(n_classes)
    fid_class, fid_shuffled = class_fid(p_gen, gen_sets, same), class_fid(p_gen, gen_sets, shuffle)
    fid_floor = class_fid(p_train, train_sets, same)

    # Memorisation.
    gen_nn, gen_nn_index = nearest_neighbours(f_gen, f_train, chunk=256)  # 256 x 27,600 distances at a time
    test_nn, _ = nearest_neighbours(f_test, f_train, chunk=256)
    closest = np.argsort(gen_nn, kind="stable")[:CLOSEST_PAIRS]

    # Fidelity and variety: the class's generated drawings and half B of its real ones, each against half A.
    variety, variety_real = [], []
    for c in range(n_classes):
        pool = rng.permutation(np.concatenate([f_train[train_set.labels == c], f_test[test_sets[c]]]))
        a, b = pool[: len(pool) // 2], pool[len(pool) // 2:][:half]
        variety.append(precision_recall_density_coverage(a, f_gen[gen_labels == c][:half], k))
        variety_real.append(precision_recall_density_coverage(a, b, k))

    return GeneratorEvaluation(
        categories=names, n_per_class=int(n_per_class), fid_per_class=m,
        gan_top1=gan["top1"], gan_top5=gan["top5"], gan_per_class=_per_class_top1(gen_probs, gen_labels, n_classes),
        real_top1=real["top1"], real_top5=real["top5"],
        real_per_class=_per_class_top1(real_probs, test_set.labels, n_classes),
        fid=fid, fid_real=fid_real, fid_class=fid_class, fid_class_shuffled=fid_shuffled, fid_class_real=fid_floor,
        shuffle=shuffle, class_fid_dims=dims,
        memorisation_ratio=_median_ratio(gen_nn, test_nn), generated_nn=gen_nn, generated_nn_index=gen_nn_index,
        test_nn=test_nn, closest_pairs=np.stack([closest, gen_nn_index[closest]], axis=1),
        variety={name: np.array([v[name] for v in variety]) for name in variety[0]},
        variety_real={name: np.array([v[name] for v in variety_real]) for name in variety_real[0]},
        variety_n=half, variety_k=int(k),
        generated=generated.astype(np.float32), generated_labels=gen_labels,
        truncation=None if truncation is None else float(truncation))


def cas_drawings(generator, train_set, test_set, run_dir=None, seed: int = 0,
                 truncation: float | None | str = "model"):
    """The drawings CAS trains on (`classification_accuracy_score`): as many of each category as `train_set` holds,
    drawn by `generator`, as `Drawings`. With `run_dir`, they are stored there (`generated.npz`) and read back by a
    later call, so a job can draw them first, then time the trainings alone."""
    from drawai.data import Drawings

    names = list(getattr(generator, "categories", None) or [])
    for what, drawings in (("train_set", train_set), ("test_set", test_set)):
        if list(drawings.categories) != names:
            raise MetricInputError(f"{what} has other categories than the generator ({len(drawings.categories)} vs "
                                   f"{len(names)}); load the data for generator.categories")
    counts = np.bincount(train_set.labels, minlength=len(names))
    if counts.min() < 1:
        raise MetricInputError(f"train_set has no drawings of {names[int(np.argmin(counts))]!r}")
    run_dir = None if run_dir is None else Path(run_dir)
    stored = run_dir / "generated.npz" if run_dir else None
    record = json.dumps({"categories": names, "counts": counts.tolist(), "seed": seed,
                         "truncation": truncation if not isinstance(truncation, str) else
                         getattr(generator, "truncation", None), "noise": getattr(generator, "noise", "normal")})
    if stored and stored.exists():
        with np.load(stored, allow_pickle=False) as npz:
            if str(npz["record"]) != record:
                raise MetricInputError(f"{run_dir} holds a CAS run of other drawings ({str(npz['record'])[:200]}); "
                                       "use a new run_dir")
            images, labels = npz["images"], npz["labels"]
    else:
        options = {} if isinstance(truncation, str) and truncation == "model" else {"truncation": truncation}
        per_call = max(1, GENERATE_CHUNK // int(counts.max()))
        drawn = np.concatenate([generator.generate(list(range(i, min(i + per_call, len(names)))), int(counts.max()),
                                                   seed + i, **options) for i in range(0, len(names), per_call)])
        keep = np.concatenate([c * counts.max() + np.arange(counts[c]) for c in range(len(names))])
        images, labels = drawn[keep].astype(np.float32), np.repeat(np.arange(len(names)), counts)
        if stored:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(stored, lambda f: np.savez(f, images=images, labels=labels, record=np.array(record)))
    return Drawings(images, labels, tuple(names), "generated drawings (canonical)",
                    hashlib.sha256(images.tobytes()).hexdigest())


def classification_accuracy_score(generator, train_set, test_set, config=None, run_dir=None, seed: int = 0,
                                  truncation: float | None | str = "model", progress: bool = True,
                                  on_epoch=None) -> dict:
    """Classification Accuracy Score, CAS (Ravuri & Vinyals 2019): the draw-ai classifier recipe (`config`, default
    `TrainConfig()`) trained on generated drawings only, as many of each category as `train_set` holds, and scored
    on the real `test_set`; beside it, the same recipe trained on `train_set` itself. A generator that draws one
    template per label teaches a classifier little about real drawings, however well its drawings are recognised.

    With `run_dir`, the generated drawings (`generated.npz`) and both trainings' checkpoints are kept there
    (`cas/`, `cas_real/`), and a second call resumes: a killed run continues from its last complete epoch, a
    finished one returns at once. One `run_dir` belongs to one generator: its stored drawings are what a resumed
    run trains on. Returns {"cas_top1", "cas_top5", "cas_real_top1", "cas_real_top5", "cas_ratio" (the top-1s'
    ratio), "cas_epochs"}. `on_epoch(name, row)`, if given, is called after each epoch of either training ("cas" on the
    generated drawings, then "cas_real") with `classifier.train`'s history row: a job's progress lines.
    """
    from drawai import classifier  # torch: imported only when needed

    generated = cas_drawings(generator, train_set, test_set, run_dir, seed, truncation)
    config = config or classifier.TrainConfig()
    scores = {}
    for name, drawings in (("cas", generated), ("cas_real", train_set)):
        _, history = classifier.train(drawings, config, test_set, checkpoint_dir=run_dir / name if run_dir else None,
                                      resume=True, progress=progress, canonical=drawings is generated,
                                      on_epoch=None if on_epoch is None else partial(on_epoch, name))
        scores[f"{name}_top1"], scores[f"{name}_top5"] = history[-1]["top1"], history[-1]["top5"]
    return {**{k: round(float(v), 4) for k, v in scores.items()},
            "cas_ratio": round(scores["cas_top1"] / max(scores["cas_real_top1"], 1e-12), 4),
            "cas_epochs": config.epochs}


def _per_class_top1(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    correct = probs.argmax(1) == labels
    return np.bincount(labels, weights=correct, minlength=k) / np.maximum(np.bincount(labels, minlength=k), 1)


# The generator's targets, each a ratio to a reference measured in the same run: (summary key, reference key, bound).
COVERAGE_TARGET = 0.75  # coverage at least this share of the real-vs-real reference's
RECALL_TARGET = 0.5  # recall at least this share of the real-vs-real reference's
GAN_TEST_TARGET = 0.9  # GAN-test top-1 at least this share of the classifier's top-1 on real test drawings
CAS_TARGET = 0.6  # CAS top-1 at least this share of the same recipe's top-1 when trained on real drawings
MEMORISATION_TARGET = 1.0  # generated drawings at least as far from the training set as unseen real ones


def generator_targets(summary: dict) -> list[dict]:
    """The generator's targets, from `GeneratorEvaluation.summary()` (plus `classification_accuracy_score`'s
    figures, if measured): each a dict with `target`, `measured` and `passed` (None when not measured). No one
    target stands for the whole: a template per label passes GAN-test and fails coverage, recall and CAS; noise
    passes recall and fails precision-bound coverage and GAN-test."""
    def share(target, value, reference, bound, unit="{:.2f}"):
        if value is None:
            return {"target": target, "measured": "not measured", "passed": None}
        return {"target": target, "passed": value >= bound * reference,
                "measured": f"{unit.format(value)} vs {unit.format(reference)} ({value / max(reference, 1e-12):.2f}x)"}

    s = summary
    out = [share(f"coverage >= {COVERAGE_TARGET:g} of real-vs-real", s["coverage"], s["coverage_real"],
                 COVERAGE_TARGET),
           share(f"recall >= {RECALL_TARGET:g} of real-vs-real", s["recall"], s["recall_real"], RECALL_TARGET),
           share(f"GAN-test top-1 >= {GAN_TEST_TARGET:g} of the classifier's top-1 on real test drawings",
                 s["gan_test_top1"], s["real_test_top1"], GAN_TEST_TARGET, "{:.1%}"),
           share(f"CAS top-1 >= {CAS_TARGET:g} of the same recipe trained on real drawings", s.get("cas_top1"),
                 s.get("cas_real_top1"), CAS_TARGET, "{:.1%}")]
    fid, control = s["fid_class_mean"], s["fid_class_shuffled_mean"]
    out += [{"target": f"per-class FID <= {SHUFFLED_FACTOR:g} of the shuffled-label control",
             "measured": f"{fid:.2f} vs {control:.2f} ({fid / max(control, 1e-12):.2f}x; real-vs-real floor "
                         f"{s['fid_class_real_mean']:.2f})", "passed": fid <= SHUFFLED_FACTOR * control},
            {"target": f"memorisation ratio >= {MEMORISATION_TARGET:g}",
             "measured": f"{s['memorisation_ratio']:.2f} (about 1: as novel as unseen real drawings; near 0: copies)",
             "passed": s["memorisation_ratio"] >= MEMORISATION_TARGET}]
    return out


def verdict(summary: dict) -> str:
    """The targets as PASS/FAIL lines, then the figures without a target, for context."""
    mark = {True: "PASS", False: "FAIL", None: "----"}
    lines = [f"{mark[t['passed']]}  {t['target']}: {t['measured']}" for t in generator_targets(summary)]
    cut = summary.get("truncation")
    lines += [f"info  noise {'truncated at +-' + format(cut, 'g') if cut is not None else 'not truncated'} "
              "(the truncation trick trades variety for clearer drawings)",
              f"info  precision {summary['precision']:.2f} (real {summary['precision_real']:.2f}), density "
              f"{summary['density']:.2f} (real {summary['density_real']:.2f}): how much of what is drawn looks real",
              f"info  pooled FID {summary['fid']:.2f} (real-vs-real floor {summary['fid_real_floor']:.2f})"]
    return "\n".join(lines)
