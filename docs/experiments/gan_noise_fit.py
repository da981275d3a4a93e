"""Noise fitted per label to the encoder's readings of the training drawings, judged on all 345 categories like the
shipped generator, as it was run (docs/experiments/gan.md, "Noise fitted to people's drawings"). Each argument is
KIND:SCALE, KIND one of shared (one within-label covariance for all labels), perclass (each label's own, shrunk 0.1
towards the pooled diagonal), perclass_t1 (the same, its unit draws truncated at +-1) and ppcaR (each label's own as
probabilistic PCA with R directions: what gan.FittedNoise keeps); SCALE multiplies the spread.

    python docs/experiments/gan_noise_fit.py shared:1.0 perclass:1.0 perclass:0.7 perclass_t1:1.0 ppca16:1.0
"""

import sys

import numpy as np

from drawai import categories as cats
from drawai import data, gan, metrics
from drawai.classifier import Classifier

model = gan.load("models/generator-345")
judge = Classifier.load("models/classifier-345")
train_set, test_set = data.train_test(data.load_sample(cats.resolve("all")))
x, y = gan.training_arrays(train_set)
codes = np.concatenate([model.encoder((x[i:i + 2048], y[i:i + 2048]))[0].numpy() for i in range(0, len(x), 2048)])
K, D = len(model.categories), codes.shape[1]
means = np.stack([codes[y == c].mean(0) for c in range(K)])
within = codes - means[y]
shared = np.cov(within.T)


class FittedGenerator:
    """generate() with noise = a label's mean + factor @ unit draws."""

    def __init__(self, kind: str, scale: float, shrink: float = 0.1):
        self.categories, self.kind, self.scale, self.factors = model.categories, kind, scale, []
        for c in range(K):
            cov = shared if kind == "shared" else (1 - shrink) * np.cov(within[y == c].T) + shrink * np.diag(
                np.diag(shared))
            if kind.startswith("ppca"):
                rank = int(kind[4:])
                values, vectors = np.linalg.eigh(cov)
                values, vectors = values[::-1], vectors[:, ::-1]
                rest = values[rank:].mean()
                self.factors.append(np.concatenate([vectors[:, :rank] * np.sqrt(np.maximum(values[:rank] - rest, 0)),
                                                    np.sqrt(rest) * np.eye(D)], 1))
            else:
                self.factors.append(np.linalg.cholesky(cov + 1e-6 * np.eye(D)))

    def generate(self, labels, n=1, seed=None, truncation=None):
        idx = model.label_indices(labels)
        width = self.factors[0].shape[1]
        if self.kind.endswith("_t1"):
            unit = gan.noise_batch(len(idx) * n, width, seed, 1.0).reshape(len(idx), n, width)
        else:
            unit = np.random.default_rng(seed).standard_normal((len(idx), n, width))
        z = np.concatenate([means[c] + self.scale * unit[i] @ self.factors[c].T for i, c in enumerate(idx)])
        out = model._generate(z.astype(np.float32), np.repeat(idx, n))
        return np.clip((out[..., 0] + 1) / 2, 0, 1).astype(np.float32)


for kind, scale in (argument.split(":") for argument in sys.argv[1:]):
    summary = metrics.evaluate_generator(FittedGenerator(kind, float(scale)), judge, train_set, test_set).summary()
    print(kind, scale, {k: round(v, 3) for k, v in summary.items() if isinstance(v, float)}, flush=True)
