"""The generator screen behind docs/experiments/gan.md ("The screen"), as it was run.

An experiment record, not part of the package: the conditional GAN's `full` preset trained on every third of the
345 categories (115: a third of the full preset's time) with one change at a time, then judged like the shipped
generator (`metrics.evaluate_generator`, 80 drawings per class, seed 0) by `models/classifier-345` restricted to
those categories, truncated at +-1 and untruncated. One line of JSON per run is appended to gan-screen-115.jsonl
beside this file. Two runs at once, one core each, took ~11 minutes at width 64:

    taskset -c 0 python docs/experiments/gan_screen.py NAME WIDTH AUX_START AUX_END EPOCHS OUT.jsonl [OVERRIDES]

AUX_START == AUX_END is a constant auxiliary weight; otherwise it grows linearly over the run
(`GANConfig.aux_weight_start`). OVERRIDES: more GANConfig fields as JSON, e.g. '{"diff_augment": true}'.
"""

import json
import sys
import time

from drawai import categories as cats
from drawai import data, gan, metrics
from drawai.classifier import Classifier

KEYS = ("gan_test_top1", "gan_test_top5", "real_test_top1", "fid_class_mean", "fid_class_shuffled_mean",
        "diversity_ratio", "memorisation_ratio")


def main(name: str, width: str, aux_start: str, aux_end: str, epochs: str, out: str, overrides: str = "{}") -> None:
    a0, a1 = float(aux_start), float(aux_end)
    names = cats.resolve("all")[::3]
    train_set, test_set = data.train_test(data.load_sample(names))
    config = gan.GANConfig.from_preset("full", categories=names, epochs=int(epochs), width=int(width),
                                       aux_weight=a1, aux_weight_start=None if a0 == a1 else a0,
                                       **json.loads(overrides))
    start = time.time()
    model = gan.train(train_set, config, verbose=0)
    row = {"name": name, "width": int(width), "aux": [a0, a1], "epochs": int(epochs), **json.loads(overrides),
           "seconds": round(time.time() - start),
           "cpu_seconds": round(sum(h["cpu_seconds"] for h in model.train_history))}
    judge = Classifier.load("models/classifier-345")
    for truncation in (1.0, None):
        summary = metrics.evaluate_generator(model, judge, train_set, test_set, truncation=truncation).summary()
        row[str(truncation)] = {k: round(summary[k], 4) for k in KEYS}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main(*sys.argv[1:])
