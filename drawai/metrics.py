"""Measures of generated drawings that need no model: pure numpy on feature vectors (or pixels).

- `frechet_distance`: FID's formula, the distance between two Gaussians fitted to two feature sets;
  with the classifier's penultimate features (`Classifier.features`) it is FID for doodles.
- `nearest_neighbours` / `memorisation_ratio`: does the generator copy its training drawings?
  Generated drawings should be about as far from the training set as unseen real drawings are.
- `mean_pairwise_distance`: diversity; a collapsed generator draws the same thing every time.

Every function takes (N, D) arrays, or (N, H, W) images (flattened).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


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
    scale = float(np.median(real_dist))
    if scale == 0:
        raise MetricInputError("the held-out drawings are copies of training drawings: no scale to compare with")
    return float(np.median(gen_dist)) / scale


def mean_pairwise_distance(x) -> float:
    """Mean Euclidean distance between all pairs of different rows: 0 when every row is the same."""
    x = _features(x, "x", 2)
    total = sum(pairwise_distances(x[i:i + 1024], x).sum() for i in range(0, len(x), 1024))
    return float(total / (len(x) * (len(x) - 1)))
