"""Densities over the encoder's readings for generator-345, its network unchanged, as they were screened
(docs/experiments/gan.md, "Kernel noise"): judged on all 345 categories like the shipped generator, each drawing
through the published model's ink curve. Each argument is KIND:SCALE[:CAS_EPOCHS][:canonical]:

- ppcaR: each label's normal as probabilistic PCA with R directions, centred on its mean (the fitted noise before);
- kde: a kernel density estimate, a random one of the label's readings plus a PPCA-16 draw (what
  `gan.FittedNoise` draws now, at SCALE 1);
- SCALE multiplies the normal's (or the kernel's) spread; CAS_EPOCHS > 0 adds the Classification Accuracy Score
  with that many epochs of the classifier recipe; `canonical` passes the drawings through `bitmaps.to_canonical`.

With --held-out, recall and coverage against held-out drawings only: per class its 20 test drawings (A) against 20
generated ones, and against 20 of its training drawings for the reference. Rows appended to
gan-kernel-noise-345.jsonl.

    python docs/experiments/gan_kernel_noise_screen.py ppca16:1 ppca32:1 kde:0.5 kde:0.7 kde:0.85 kde:1.0 ppca16:1.2
    python docs/experiments/gan_kernel_noise_screen.py ppca16:1:0:canonical kde:1.0:15 kde:1.0:15:canonical
    python docs/experiments/gan_kernel_noise_screen.py --held-out ppca16:1 kde:0.5 kde:0.7 kde:1.0 ppca16:1.2
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from drawai import bitmaps, data, gan, metrics
from drawai import categories as cats
from drawai.classifier import Classifier, TrainConfig

ROWS = Path(__file__).with_name("gan-kernel-noise-345.jsonl")
model = gan.load("models/generator-345")
judge = Classifier.load("models/classifier-345")
train_set, test_set = data.train_test(data.load_sample(cats.resolve("all")))
x, y = gan.training_arrays(train_set)
codes = np.concatenate([model.encoder((x[i:i + 2048], y[i:i + 2048]))[0].numpy() for i in range(0, len(x), 2048)])
K, D = len(model.categories), codes.shape[1]
means = np.stack([codes[y == c].mean(0) for c in range(K)])
pooled = np.diag(np.var(codes - means[y], axis=0))


def ppca_factors(rank: int, shrink: float = 0.1) -> list[np.ndarray]:
    """Per label, F with F @ F.T its PPCA covariance (as gan.FittedNoise fits it), for unit draws of width rank + D."""
    factors = []
    for c in range(K):
        values, vectors = np.linalg.eigh((1 - shrink) * np.cov(codes[y == c].T) + shrink * pooled)
        values, vectors = values[::-1], vectors[:, ::-1]
        rest = values[rank:].mean()
        factors.append(np.concatenate([vectors[:, :rank] * np.sqrt(np.maximum(values[:rank] - rest, 0)),
                                       np.sqrt(rest) * np.eye(D)], 1))
    return factors


class ScreenedGenerator:
    """generate() with noise from one screened density."""

    def __init__(self, kind: str, scale: float, canonical: bool):
        self.categories, self.kind, self.scale, self.canonical = model.categories, kind, scale, canonical
        self.factors = ppca_factors(int(kind[4:]) if kind.startswith("ppca") else 16)

    def generate(self, labels, n=1, seed=None, truncation=None):
        idx = model.label_indices(labels)
        rng = np.random.default_rng(seed)
        unit = rng.standard_normal((len(idx), n, self.factors[0].shape[1]))
        z = []
        for i, c in enumerate(idx):
            own = codes[y == c]
            centre = own[rng.integers(0, len(own), n)] if self.kind == "kde" else means[c]
            z.append(centre + self.scale * unit[i] @ self.factors[c].T)
        out = model._generate(np.concatenate(z).astype(np.float32), np.repeat(idx, n))
        out = model.ink_curve.apply(np.clip((out[..., 0] + 1) / 2, 0, 1).astype(np.float32))
        if self.canonical:
            ok = bitmaps.readable(out)
            out[ok] = bitmaps.to_canonical(out[ok])
        return out


def held_out_variety(generator) -> dict:
    prdc = metrics.precision_recall_density_coverage
    f_test = judge.features(test_set.images).astype(np.float64)
    f_train = judge.features(train_set.images).astype(np.float64)
    generated = np.concatenate([generator.generate(list(range(i, min(i + 50, K))), 20, seed=i)
                                for i in range(0, K, 50)])
    f_gen = judge.features(generated, canonical=True).astype(np.float64)
    rng = np.random.default_rng(7)
    rows, reference = [], []
    for c in range(K):
        own_train = f_train[train_set.labels == c]
        rows.append(prdc(f_test[test_set.labels == c], f_gen[c * 20:(c + 1) * 20]))
        reference.append(prdc(f_test[test_set.labels == c], own_train[rng.permutation(len(own_train))[:20]]))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    ref = {k: float(np.mean([r[k] for r in reference])) for k in reference[0]}
    return {**mean, **{f"{k}_reference": v for k, v in ref.items()},
            **{f"{k}_ratio": mean[k] / ref[k] for k in ("recall", "coverage")}}


keys = ["gan_test_top1", "real_test_top1", "precision", "recall", "coverage", "recall_ratio", "coverage_ratio",
        "memorisation_ratio", "fid_class_mean", "fid_class_shuffled_mean"]
held_out = "--held-out" in sys.argv
for argument in [a for a in sys.argv[1:] if a != "--held-out"]:
    kind, scale, epochs, canonical = (argument.split(":") + ["0", ""])[:4]
    start = time.time()
    generator = ScreenedGenerator(kind, float(scale), canonical == "canonical")
    row = {"kind": kind, "scale": float(scale), "canonical": canonical == "canonical"}
    if held_out:
        row |= {"held_out": True, **held_out_variety(generator)}
    else:
        summary = metrics.evaluate_generator(generator, judge, train_set, test_set, seed=0).summary()
        row |= {k: summary[k] for k in keys}
        if int(epochs):
            run = Path("runs") / "gan-kernel-noise" / argument.replace(":", "-")
            cas = metrics.classification_accuracy_score(generator, train_set, test_set, TrainConfig(epochs=int(epochs)),
                                                        run, progress=False)
            row |= {k: v for k, v in cas.items() if k != "cas_epochs"} | {"cas_epochs": int(epochs)}
    row = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
    row["seconds"] = round(time.time() - start)
    print(json.dumps(row), flush=True)
    with ROWS.open("a") as f:
        f.write(json.dumps(row) + "\n")
