"""The variety screen behind docs/experiments/gan.md ("The variety screen"), as it was run.

An experiment record, not part of the package: the conditional GAN trained on every third of the 345 categories
(115) from the `full` preset as it was before the screen (AC weight 0.3, DiffAugment, Adam 2e-3, no encoder), with
the changes given as GANConfig fields in JSON, then judged like the shipped generator (`metrics.evaluate_generator`,
seed 0) by `models/classifier-345` restricted to those categories, truncated at +-0.5, +-1 and untruncated. One line
of JSON per run is appended to gan-variety-screen-115.jsonl beside this file. Two runs at once, one core each:

    taskset -c 0 python docs/experiments/gan_variety_screen.py NAME 60 OUT.jsonl \
        '{"aux_weight": 0.3, "lr": 5e-4, "reconstruction": 10}'

Runs are checkpointed under runs/variety-screen/NAME, so a killed one resumes.
"""

import json
import sys
import time

from drawai import categories as cats
from drawai import data, gan, metrics
from drawai.classifier import Classifier

# The `full` preset the screen started from.
BEFORE = dict(categories="all", width=64, aux_weight=0.3, diff_augment=True, reconstruction=0.0, lr=2e-3,
              truncation=0.5)
KEYS = ("gan_test_top1", "real_test_top1", "fid_class_mean", "fid_class_shuffled_mean", "memorisation_ratio",
        "precision", "recall", "density", "coverage", "precision_real", "recall_real", "coverage_real")


def main(name: str, epochs: str, out: str, overrides: str = "{}") -> None:
    names = cats.resolve("all")[::3]
    train_set, test_set = data.train_test(data.load_sample(names))
    changes = json.loads(overrides)
    config = gan.GANConfig(**{**BEFORE, "categories": names, "epochs": int(epochs), **changes})
    start = time.time()
    model = gan.train(train_set, config, run_dir=f"runs/variety-screen/{name}", resume=True, verbose=0)
    row = {"name": name, "stride": 3, "epochs": int(epochs), **changes, "seconds": round(time.time() - start),
           "cpu_seconds": round(sum(h["cpu_seconds"] for h in model.train_history))}
    judge = Classifier.load("models/classifier-345")
    for truncation in (0.5, 1.0, None):
        summary = metrics.evaluate_generator(model, judge, train_set, test_set, truncation=truncation).summary()
        row["none" if truncation is None else str(truncation)] = {k: round(summary[k], 3) for k in KEYS}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main(*sys.argv[1:])
