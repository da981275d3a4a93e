"""Where the shipped generator's variety is, as it was run (docs/experiments/gan.md, "Noise fitted to people's
drawings"): for every third category, half of its 100 real drawings (B) against the other half (A) in the judge's
feature space, beside drawings generated from N(0, 1) noise and B redrawn from the encoder's readings of it.

    python docs/experiments/gan_redraw_diagnostic.py
"""

import numpy as np
from scipy.ndimage import gaussian_filter

from drawai import categories as cats
from drawai import data, gan, metrics
from drawai.classifier import Classifier

model = gan.load("models/generator-345")
judge = Classifier.load("models/classifier-345")
x, y = gan.training_arrays(data.load_sample(cats.resolve("all")))  # all 100 a category, [-1, 1]
rng = np.random.default_rng(0)
rows: dict[str, list] = {}
for c in range(0, 345, 3):
    order = rng.permutation(np.flatnonzero(y == c))
    a, b = order[:50], order[50:100]
    labels = np.full(50, c, np.int32)

    def draw(z, labels=labels):
        return np.clip((model.generator((z.astype(np.float32), labels)).numpy()[..., 0] + 1) / 2, 0, 1)

    mean, log_var = (t.numpy() for t in model.encoder((x[b], labels)))
    real = (x[b, ..., 0] + 1) / 2
    sets = {
        "real (B)": real,
        "generated, N(0, 1) at +-1": model.generate(c, 50, seed=c, truncation=1.0),
        "generated, N(0, 1)": model.generate(c, 50, seed=c, truncation=None),
        "B redrawn from the encoder's mean": draw(mean),
        "B redrawn from a sample of the encoder's normal": draw(
            mean + np.exp(0.5 * log_var) * np.random.default_rng(c).standard_normal(mean.shape)),
        "B blurred (Gaussian, sigma 0.7 px)": np.clip(gaussian_filter(real, sigma=(0, 0.7, 0.7)) * 1.3, 0, 1),
    }
    reference = judge.features((x[a, ..., 0] + 1) / 2, canonical=True)
    for name, images in sets.items():
        rows.setdefault(name, []).append(metrics.precision_recall_density_coverage(
            reference, judge.features(images.astype(np.float32), canonical=True), k=5))
for name, got in rows.items():
    print(f"{name:50s}", {m: round(float(np.mean([r[m] for r in got])), 3) for m in got[0]})
