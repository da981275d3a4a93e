"""Where the shipped generator's CAS is lost, as it was run (docs/experiments/gan.md, "Where CAS is lost"): the
draw-ai classifier recipe trained for 15 epochs on one set of 80 drawings per category of all 345, scored on the
real test split, for three sets: generated at the default noise; the same with their pixel values mapped onto the
training drawings' (histogram matching, what `gan.InkCurve` does); the training drawings redrawn by the generator
from the encoder's readings of them. Rows appended to gan-cas-diagnostic-345.jsonl. Run on generator-345 before
it had its ink curve.

    python docs/experiments/gan_cas_diagnostic.py
"""

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from drawai import classifier, data, gan
from drawai.data import Drawings

EPOCHS = 15
ROWS = Path(__file__).with_name("gan-cas-diagnostic-345.jsonl")

model = gan.load("models/generator-345")
names = list(model.categories)
train_set, test_set = data.train_test(data.load_sample(names))
x, y = gan.training_arrays(train_set)
real = (x[..., 0] + 1) / 2
generated = np.concatenate([model.generate(c, 80, seed=c) for c in range(len(names))])
generated_labels = np.repeat(np.arange(len(names)), 80)


def matched(images: np.ndarray) -> np.ndarray:
    q = np.linspace(0, 1, 1001)
    source = np.maximum.accumulate(np.quantile(images, q) + q * 1e-9)
    return np.interp(images, source, np.quantile(real, q)).astype(np.float32)


def redrawn(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(images), 2000):
        mean, _ = model.encoder((images[i:i + 2000], labels[i:i + 2000]))
        out.append(np.clip((model.generator((mean, labels[i:i + 2000])).numpy()[..., 0] + 1) / 2, 0, 1))
    return np.concatenate(out)


sets = {
    "generated, default noise": lambda: (generated, generated_labels),
    "generated, pixel values matched to the training drawings'": lambda: (matched(generated), generated_labels),
    "the training drawings redrawn from the encoder's readings": lambda: (redrawn(x, y), y),
}
for name, make in sets.items():
    started = time.time()
    images, labels = make()
    images = images.astype(np.float32)
    drawings = Drawings(images, labels.astype(np.int64), tuple(names), name,
                        hashlib.sha256(images.tobytes()).hexdigest())
    _, history = classifier.train(drawings, classifier.TrainConfig(epochs=EPOCHS), test_set, progress=False,
                                  canonical=True)
    row = {"variant": name, "epochs": EPOCHS, "top1": round(history[-1]["top1"], 4),
           "train_top1": round(history[-1]["train_top1"], 4), "seconds": round(time.time() - started)}
    print(json.dumps(row), flush=True)
    with open(ROWS, "a") as f:
        f.write(json.dumps(row) + "\n")
