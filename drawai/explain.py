"""Why the classifier guessed what it did: which pixels drove a guess, and which training drawings it is like.

    saliency(clf, drawing)            # 28x28: how much each pixel of the canonical form added to the guess
    nearest(clf, drawing, k=5)        # the training drawings the classifier reads most alike
    nearest(clf, drawing, label="cat")  # ... among the cats only: "why raccoon and not cat?"

Both read a drawing as `Classifier.predict` does: any bitmap through `bitmaps.to_canonical`, strokes through
`strokes.render_strokes` (or a canonical bitmap as it is, with `canonical=True`), and they explain the score
draw-ai shows, the class probability averaged over the drawing and its mirror image.

`saliency` is integrated gradients (Captum) from the blank canvas: a pixel's value is its share of the rise
in probability from no drawing to this one, so the map is zero wherever there is no ink and sums to about
that rise. `nearest` measures likeness as the classifier's own answer, the cosine distance between
mirror-averaged class probabilities. Both choices, and the measurements that check them (the deletion
curve, the model-randomisation check, neighbour agreement), are in docs/experiments/explain.md; `make
bench` measures them again (its `explain` section).
"""

from __future__ import annotations

import copy
import hashlib
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from drawai import bitmaps, data, seeds
from drawai.checks import is_whole
from drawai.classifier import Classifier, for_inference
from drawai.io import atomic_write
from drawai.strokes import render_strokes

IG_STEPS = 8  # integrated gradients' steps from the blank canvas: 16 and 32 take 2x and 8x as long, delete no better
INDEX_FORMAT = "drawai-nearest/1"  # in every saved index's key: change it when the space changes
DELETION_KS = tuple(range(1, 51))  # % of a drawing's ink pixels blanked


# --- reading a drawing ------------------------------------------------------------------------------------------

def canonical_form(drawing, canonical: bool = False) -> np.ndarray:
    """One drawing -> its (28, 28) float32 canonical form: a bitmap (any size, via `bitmaps.to_canonical`, or as
    it is with `canonical=True`), or strokes (lists of points or Google's ndjson layout, a dict with "drawing")."""
    if _is_strokes(drawing):
        return render_strokes(drawing)
    x, single = bitmaps.as_float_images(drawing)
    if not single:
        raise bitmaps.BadBitmapError(f"explanations are for one drawing at a time, got a batch of {len(x)}")
    x = x[0] if canonical else bitmaps.to_canonical(x[0])
    if x.shape != (bitmaps.SIZE, bitmaps.SIZE):
        raise bitmaps.BadBitmapError(f"canonical input must be 28x28, got {x.shape}")
    bitmaps.ink_box(x)  # a blank canonical bitmap has nothing to explain
    return x


def _is_strokes(drawing) -> bool:
    """Lists of strokes are ragged or three-dimensional; a nested list that forms a 2-D grid is a bitmap."""
    if isinstance(drawing, dict):
        return True
    if not isinstance(drawing, list | tuple):
        return False
    try:
        grid = np.asarray(drawing, dtype=np.float64)
    except (ValueError, TypeError):
        return True
    return not (grid.ndim == 2 and min(grid.shape) >= 8 or grid.ndim == 1 and grid.size == bitmaps.SIZE ** 2)


def class_index(clf: Classifier, label) -> int:
    """A category name or index of `clf` -> its index; anything else is a ValueError that lists the choices."""
    if isinstance(label, str):
        if label not in clf.categories:
            raise ValueError(f"{label!r} is not one of this classifier's {len(clf.categories)} categories "
                             f"({', '.join(clf.categories[:5])}, ...)")
        return clf.categories.index(label)
    if isinstance(label, int | np.integer) and not isinstance(label, bool) and 0 <= label < len(clf.categories):
        return int(label)
    raise ValueError(f"label must be a category name or an index below {len(clf.categories)}, got {label!r}")


# --- saliency ---------------------------------------------------------------------------------------------------

class MirroredProbabilities(nn.Module):
    """A model's class probabilities averaged over each drawing and its mirror image (`mirror_probabilities`),
    in float32 and differentiable: the score `saliency` explains."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = for_inference(model)
        for m in self.net.modules():  # gradients through an in-place ReLU would overwrite what autograd kept
            if isinstance(m, nn.ReLU):
                m.inplace = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.softmax(self.net(torch.cat([x, x.flip(3)])).float(), dim=1)
        return (p[:len(x)] + p[len(x):]) / 2


_per_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {"version", "scorer", ...}


def _cached(clf: Classifier) -> dict:
    """What is derived from `clf.model`'s weights, kept until they change in place (each tensor counts its
    changes, as `Classifier` does for prediction)."""
    version = sum(t._version for t in [*clf.model.parameters(), *clf.model.buffers()])
    cached = _per_model.get(clf.model)
    if cached is None or cached["version"] != version:
        cached = _per_model[clf.model] = {"version": version}
    return cached


def scorer(clf: Classifier) -> MirroredProbabilities:
    """`MirroredProbabilities` of `clf.model`, made once and again whenever its weights change in place."""
    cached = _cached(clf)
    if "scorer" not in cached:
        cached["scorer"] = MirroredProbabilities(clf.model).eval()
    return cached["scorer"]


def saliency(clf: Classifier, drawing, label=None, canonical: bool = False, steps: int = IG_STEPS) -> np.ndarray:
    """(28, 28) float32: each canonical pixel's part in the probability of `label` (a category name or index;
    default the top guess). Positive pixels raise it, negative ones lower it; pixels without ink are 0, and
    the map sums to the rise in probability from the blank canvas to this drawing, the closer the more `steps`
    (integrated gradients' completeness: 8 steps miss it by a median 0.016, 64 by 0.001)."""
    from captum.attr import IntegratedGradients

    x = canonical_form(drawing, canonical)
    model = scorer(clf)
    t = torch.from_numpy(x)[None, None]
    if label is None:
        with torch.no_grad():
            target = int(model(t).argmax())
    else:
        target = class_index(clf, label)
    attr = IntegratedGradients(model).attribute(t.requires_grad_(), baselines=torch.zeros_like(t), target=target,
                                               n_steps=steps)
    return attr[0, 0].detach().numpy().astype(np.float32)


def overlay(canonical_image: np.ndarray, saliency_map: np.ndarray) -> np.ndarray:
    """(28, 28, 3) float RGB in [0, 1]: the drawing dimmed to grey, each pixel tinted red as far as it raised the
    guess and blue as far as it lowered it, relative to the strongest (the square root, so that pixels of
    middling weight still show). What the pad and the notebooks show."""
    strength = saliency_map / max(float(np.abs(saliency_map).max()), 1e-12)
    grey = np.repeat(0.45 * canonical_image[..., None], 3, axis=2)
    tint = np.where(strength[..., None] > 0, [1.0, 0.15, 0.1], [0.15, 0.45, 1.0])
    alpha = np.sqrt(np.abs(strength))[..., None]
    return np.clip(grey * (1 - alpha) + tint * alpha, 0, 1)


# --- nearest training drawings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Neighbours:
    """The training drawings nearest a drawing, nearest first."""

    images: np.ndarray  # (k, 28, 28) uint8 as the sample ships them; bitmaps.to_canonical shows what the model saw
    labels: list[str]
    distances: np.ndarray  # (k,) cosine distance of mirror-averaged class probabilities: 0 same answer, 1 unrelated
    index: np.ndarray  # (k,) positions in the index: for `nearest_index`'s, in the shared split's training set


@dataclass(frozen=True)
class Index:
    """A classifier's reading of every training drawing of its categories in the shared split."""

    vectors: np.ndarray  # (N, C) float32, unit length: mirror-averaged class probabilities
    labels: np.ndarray  # (N,) int64, indices into the classifier's categories
    images: np.ndarray  # (N, 28, 28) uint8


def embed(clf: Classifier, canonical_images: np.ndarray) -> np.ndarray:
    """(N, C) unit vectors of mirror-averaged class probabilities: the space neighbours are measured in.

    Chosen by agreement with the model: in it a test drawing's nearest training drawings mostly carry the model's
    top guess, far more often than with the penultimate features that FID uses, whose nearest drawings often look
    alike to a person but not to the model (docs/experiments/explain.md, "Nearest training drawings: which space").
    """
    model = scorer(clf)  # float32: bfloat16's rounding would outweigh the distances between close drawings
    with torch.no_grad():
        p = torch.cat([model(torch.from_numpy(np.ascontiguousarray(canonical_images[i:i + 1024]))[:, None])
                       for i in range(0, len(canonical_images), 1024)])
    return F.normalize(p, dim=1).numpy()


def model_digest(clf: Classifier) -> str:
    """SHA-256 over the weights, the categories and the index's format: the name of a saved index."""
    cached = _cached(clf)
    key = ("digest", tuple(clf.categories))
    if key not in cached:
        cached[key] = _digest(clf)
    return cached[key]


def _digest(clf: Classifier) -> str:
    h = hashlib.sha256(INDEX_FORMAT.encode())
    h.update("\n".join(clf.categories).encode())
    h.update(data.sample_info()["sha256"].encode())
    for name, tensor in sorted(clf.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


_indexes: dict[str, Index] = {}  # by model digest: an index is built or read once per process


def forget_indexes() -> None:
    """Drop the indexes held in memory (those saved stay): the next `nearest_index` reads or builds one again."""
    _indexes.clear()


def default_index_folder() -> Path:
    from drawai.jobs import RUNS

    return RUNS / "cache"


def build_index(clf: Classifier, drawings: data.Drawings) -> Index:
    """An index of any labelled drawings of `clf`'s categories, not saved: e.g. of a few categories' training
    drawings, for their neighbours alone (`nearest(..., label=...)`) without indexing all of them."""
    unknown = sorted(set(drawings.categories) - set(clf.categories))
    if unknown:
        raise ValueError(f"the drawings have categories the classifier does not know: {unknown[:5]}")
    labels = np.array([clf.categories.index(n) for n in drawings.categories], dtype=np.int64)[drawings.labels]
    return Index(embed(clf, bitmaps.to_canonical(drawings.images)), labels, np.asarray(drawings.images))


def has_index(clf: Classifier, folder: str | Path | None = None) -> bool:
    """Whether `nearest_index` will find `clf`'s index in memory or saved, rather than build it."""
    digest = model_digest(clf)
    return digest in _indexes or index_path(digest, folder).exists()


def index_path(digest: str, folder: str | Path | None = None) -> Path:
    return Path(folder or default_index_folder()) / f"nearest-{digest[:20]}.npz"


def nearest_index(clf: Classifier, folder: str | Path | None = None) -> Index:
    """The index of `clf`'s training drawings: from memory, else from `folder` (default runs/cache), else built and
    saved there; building canonicalises 27,600 drawings and runs a forward pass, which takes a while the first time
    (docs/experiments/explain.md, "The pad")."""
    digest = model_digest(clf)
    if digest in _indexes:
        return _indexes[digest]
    path = index_path(digest, folder)
    index = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["digest"]) == digest:
                    index = Index(npz["vectors"], npz["labels"], npz["images"])
        except (OSError, ValueError, KeyError):  # a damaged cache is rebuilt, not trusted
            index = None
    if index is None:
        # the neighbours come from the shared split's training drawings only
        index = build_index(clf, data.train_test(data.load_sample(clf.categories), seed=data.SPLIT_SEED)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: np.savez(p, digest=np.array(digest), vectors=index.vectors,
                                              labels=index.labels, images=index.images))
    _indexes[digest] = index
    return index


def nearest(clf: Classifier, drawing, k: int = 5, label=None, canonical: bool = False,
            index: Index | None = None) -> Neighbours:
    """The `k` training drawings (the shared split's) that `clf` reads most like `drawing`; with `label` (a
    category name or index), only drawings of that category."""
    if not is_whole(k, 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    x = canonical_form(drawing, canonical)
    index = index or nearest_index(clf)
    candidates = np.arange(len(index.labels)) if label is None else np.flatnonzero(
        index.labels == class_index(clf, label))
    cached = _cached(clf)
    if cached.get("last_drawing", (None,))[0] != x.tobytes():  # the pad asks for two guesses' neighbours in turn
        cached["last_drawing"] = x.tobytes(), embed(clf, x[None])[0]
    distances = 1 - index.vectors[candidates] @ cached["last_drawing"][1]
    order = np.argsort(distances, kind="stable")[:k]
    picked = candidates[order]
    return Neighbours(index.images[picked], [clf.categories[i] for i in index.labels[picked]],
                      np.maximum(distances[order], 0), picked)


# --- faithfulness ------------------------------------------------------------------------------------------------

def ink_pixels(image: np.ndarray) -> np.ndarray:
    """Flat indices of the pixels the canonical brush touched."""
    return np.flatnonzero(image.ravel() > 0)


def deletion_curve(clf: Classifier, images: np.ndarray, maps: np.ndarray, labels: np.ndarray,
                   ks=DELETION_KS, seed: int = 0) -> dict:
    """Blank the k % most salient ink pixels of each canonical image, and as many random ink pixels; the mean
    fall of the probability of `labels` (the guessed classes) for every k: {"k", "salient", "random", "start"}
    ("start": the mean probability before any pixel is blanked)."""
    model = scorer(clf)
    salient_falls, random_falls, start = [], [], []
    for i, (x, m, c) in enumerate(zip(images, maps, labels)):
        ink = ink_pixels(x)
        ranked = ink[np.argsort(-m.ravel()[ink], kind="stable")]
        shuffled = seeds.rng(seed, i).permutation(ink)
        variants = [x]
        for order in (ranked, shuffled):
            for k in ks:
                y = x.ravel().copy()
                y[order[:max(1, round(k / 100 * len(ink)))]] = 0
                variants.append(y.reshape(x.shape))
        with torch.no_grad():
            p = model(torch.from_numpy(np.stack(variants))[:, None])[:, int(c)].numpy()
        start.append(p[0])
        salient_falls.append(p[0] - p[1:1 + len(ks)])
        random_falls.append(p[0] - p[1 + len(ks):])
    return {"k": list(ks), "salient": np.mean(salient_falls, 0).tolist(), "random": np.mean(random_falls, 0).tolist(),
            "start": float(np.mean(start))}


def randomised(clf: Classifier, seed: int = 0) -> Classifier:
    """A copy of `clf` whose last convolution stage and head are re-initialised (Adebayo et al. 2018's cascading
    randomisation, its first steps): a faithful saliency map changes when they do."""
    model = copy.deepcopy(clf.model)
    torch.manual_seed(seed)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    last = [m for m in model.features.modules() if isinstance(m, nn.BatchNorm2d)][-1:]
    for m in [*convs[-1:], *last, model.head]:
        m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    return Classifier(model, clf.categories, clf.manifest)


def rank_correlation(maps_a: np.ndarray, maps_b: np.ndarray, images: np.ndarray) -> float:
    """Mean Spearman correlation of two sets of maps over each drawing's ink pixels (outside the ink both are 0,
    which would count as agreement)."""
    from scipy.stats import spearmanr

    rhos = [spearmanr(a.ravel()[ink], b.ravel()[ink])[0] for a, b, x in zip(maps_a, maps_b, images)
            for ink in [ink_pixels(x)]]
    return float(np.nanmean(rhos))


def neighbour_agreement(clf: Classifier, images: np.ndarray, k: int = 5, index: Index | None = None) -> float:
    """The share of canonical `images` whose k nearest training drawings' majority label (ties: the nearer) is
    the classifier's top guess."""
    index = index or nearest_index(clf)
    vectors = embed(clf, images)
    agree = 0
    for start in range(0, len(vectors), 256):
        chunk = vectors[start:start + 256]
        near = np.argsort(-(chunk @ index.vectors.T), axis=1, kind="stable")[:, :k]
        for v, labels in zip(chunk, index.labels[near]):
            counts = np.bincount(labels, minlength=len(clf.categories))
            agree += next(c for c in labels if counts[c] == counts.max()) == v.argmax()
    return agree / len(images)
