"""The published generator given again what `gan.train` fits last, as it was done (docs/experiments/gan.md, "The
ink curve" and "Kernel noise"): each label's noise (`fit_noise`, the encoder's readings of its training drawings)
and then the ink curve (`fit_ink`), on its training drawings, with the network's weights unchanged; judged as
notebook 03 judges a trained generator (its default noise and the two N(0, 1) noises; CAS with the classifier
recipe's 30 epochs), and saved with those figures to OUT, weights and manifest; the figures are printed.
`models/generator-345` is OUT copied over it.

    python docs/experiments/gan_refit.py [OUT]      # OUT: runs/gan-refit/model
"""

import json
import sys
from pathlib import Path

from drawai import data, gan, metrics, model_folder
from drawai.classifier import Classifier, TrainConfig
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, ROOT

out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "gan-refit" / "model"
model = gan.load(GENERATOR_DIR)
published = model_folder.read(GENERATOR_DIR)
train_set, test_set = data.train_test(data.load_sample(list(model.categories)))
images, labels = gan.training_arrays(train_set)
model.fit_noise(images, labels)
model.fit_ink(images)

judge = Classifier.load(CLASSIFIER_DIR, categories=list(model.categories))
summary = metrics.evaluate_generator(model, judge, train_set, test_set, seed=0).summary()
keys = ["gan_test_top1", "fid_class_mean", "fid_class_shuffled_mean", "precision", "recall", "coverage"]
other_noises = {}
for name in ("normal ±1", "normal untruncated"):
    noise = metrics.NAMED_NOISES[name]
    judged = metrics.evaluate_generator(model, judge, train_set, test_set, seed=0, **noise).summary()
    other_noises[name] = {k: judged[k] for k in keys}
print(json.dumps(summary | {"other_noises": other_noises}, indent=1, ensure_ascii=False), flush=True)
summary |= metrics.classification_accuracy_score(model, train_set, test_set, TrainConfig(epochs=30),
                                                 out.parent / "cas", progress=False)
trained = {k: published["metrics"][k] for k in ("epochs", "last_epoch", "train_seconds", "train_cpu_seconds",
                                                "recipe", "preset", "categories", "seed")}
results = {**trained, **summary, "noise": model.noise, "other_noises": other_noises,
           "targets": {t["target"]: t["passed"] for t in metrics.generator_targets(summary)}}
gan.save(model, out, metrics=results, command=published["command"])
print(json.dumps(results, indent=1, ensure_ascii=False))
print(metrics.verdict(summary))
