"""Small real models for the fight's tests, with the APIs `drawai.fight` uses.

MarkGenerator draws a category as one bright pixel at a place of its own (or at another category's
place: a generator that "cannot draw" some labels); MarkClassifier reads the pixel back. Both are
exact and fast, so a test knows which rounds must be won.
ReplayGenerator hands out real drawings of the requested label.
"""

from __future__ import annotations

import numpy as np

from drawai.categories import CATEGORIES


def mark(name: str) -> tuple[int, int]:
    """Where a category's pixel is: one place per category of the 345, the same for every model."""
    i = CATEGORIES.index(name)
    return 4 + i // 20, 4 + i % 20


class MarkGenerator:
    def __init__(self, categories, draws_as: dict | None = None, fail_after: int | None = None):
        self.categories = tuple(categories)
        self.draws_as = draws_as or {}  # label -> the label whose bar it draws instead
        self.fail_after = fail_after
        self.calls = 0

    def generate(self, labels, n=1, seed=None):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("the generator's weights are gone")
        labels = [labels] if isinstance(labels, str) else list(labels)
        rng = np.random.default_rng(seed)
        out = np.zeros((len(labels) * n, 28, 28), np.float32)
        for j, name in enumerate(np.repeat(labels, n)):
            out[(j, *mark(self.draws_as.get(name, name)))] = rng.uniform(0.8, 1.0)
        return out


class MarkClassifier:
    """Softmax over the ink at each of its categories' places: the marked category wins, with p > 0.9."""

    def __init__(self, categories):
        self.categories = list(categories)
        self.calls = 0

    def probabilities(self, images, canonical=False):
        self.calls += 1
        x = np.asarray(images, np.float32)
        single = x.ndim == 2
        x = x.reshape(-1, 28, 28)
        rows, cols = np.array([mark(name) for name in self.categories]).T
        logits = 12 * x[:, rows, cols]
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return p[0] if single else p


class ReplayGenerator:
    """'Draws' a label by handing out the next of the given real drawings of it (canonical), in order."""

    def __init__(self, drawings, canonical_images):
        self.categories = tuple(drawings.categories)
        self.by_label = {name: canonical_images[drawings.labels == i] for i, name in enumerate(self.categories)}
        self.used = dict.fromkeys(self.categories, 0)

    def generate(self, labels, n=1, seed=None):
        labels = [labels] if isinstance(labels, str) else list(labels)
        out = []
        for name in np.repeat(labels, n):
            i = self.used[name] % len(self.by_label[name])
            out.append(self.by_label[name][i])
            self.used[name] += 1
        return np.stack(out)


class BlankGenerator:
    def __init__(self, categories):
        self.categories = tuple(categories)

    def generate(self, labels, n=1, seed=None):
        labels = [labels] if isinstance(labels, str) else list(labels)
        return np.zeros((len(labels) * n, 28, 28), np.float32)
