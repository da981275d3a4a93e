"""The variety screen's runs judged with each label's fitted noise (gan.FittedNoise), as it was run: the last
checkpoint of runs/variety-screen/NAME (gan_variety_screen.py), its noise fitted on the training drawings, judged
untruncated and at +-1 like the screen. One line of JSON per run is appended to gan-fitted-noise-115.jsonl.

    python docs/experiments/gan_fitted_noise_screen.py NAME [NAME ...]
"""

import json
import sys
from pathlib import Path

from drawai import categories as cats
from drawai import data, gan, metrics
from drawai.classifier import Classifier

KEYS = ("gan_test_top1", "fid_class_mean", "fid_class_shuffled_mean", "memorisation_ratio", "precision", "recall",
        "density", "coverage")
names = cats.resolve("all")[::3]
train_set, test_set = data.train_test(data.load_sample(names))
x, y = gan.training_arrays(train_set)
judge = Classifier.load("models/classifier-345")
for name in sys.argv[1:]:
    last = sorted((Path("runs/variety-screen") / name / "checkpoints").glob("epoch-*.keras"))[-1]
    model = gan.io.load_keras(last)
    model.fit_noise(x, y)
    row = {"name": name, "checkpoint": last.name}
    for truncation in (None, 1.0):
        s = metrics.evaluate_generator(model, judge, train_set, test_set, truncation=truncation,
                                       noise="fitted").summary()
        row[f"fitted-{truncation}"] = {k: round(s[k], 3) for k in KEYS}
    print(json.dumps(row), flush=True)
    with open(Path(__file__).with_name("gan-fitted-noise-115.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
