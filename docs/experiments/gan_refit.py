"""The published generator given again what `gan.train` does after its GAN epochs, as it was done (docs/experiments/
gan.md, "The ink curve", "Kernel noise" and "A stroke refiner"): each label's noise (`fit_noise`, the encoder's
readings of its training drawings), the ink curve (`fit_ink`) and the stroke refiner (`train_refiner`, the `full`
preset's, checkpointed in OUT/../refiner: run again to resume), on its training drawings, with the GAN's weights
unchanged. Saved to OUT, loaded back, and judged as notebook 03 judges a trained generator (its default noise and
the two N(0, 1) noises; CAS with the classifier recipe's 30 epochs, or --cas-epochs); saved again with those
figures, which are printed, and appended as a row to gan-refiner-345.jsonl. `models/generator-345` is OUT copied
over it. --start redraws from another time than the preset's (a screen; not for publishing); --keep-refiner keeps
the published refiner's weights and fits its ink curve alone.

    python docs/experiments/gan_refit.py [OUT] [--start 0.6] [--cas-epochs 30] [--own-noise-only] [--keep-refiner]
    # OUT: runs/gan-refit/model
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from drawai import data, gan, metrics, model_folder
from drawai.classifier import Classifier, TrainConfig
from drawai.gan.training import configure_threads
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR, ROOT

ROWS = Path(__file__).with_name("gan-refiner-345.jsonl")
ap = argparse.ArgumentParser()
ap.add_argument("out", nargs="?", type=Path, default=ROOT / "runs" / "gan-refit" / "model")
ap.add_argument("--start", type=float, default=None)
ap.add_argument("--cas-epochs", type=int, default=30)
ap.add_argument("--own-noise-only", action="store_true", help="skip judging the two N(0, 1) noises")
ap.add_argument("--keep-refiner", action="store_true", help="the published refiner, its ink curve fitted again")
args = ap.parse_args()
configure_threads()  # as `gan.train` does first: the refiner trains as it would at the end of a run

model = gan.load(GENERATOR_DIR)
published = model_folder.read(GENERATOR_DIR)
preset = gan.GANConfig.from_preset("full")
config = gan.GANConfig(**{**published["config"], **{k: getattr(preset, k) for k in gan.REFINER_FIELDS}})
train_set, test_set = data.train_test(data.load_sample(list(model.categories)))
images, labels = gan.training_arrays(train_set)
model.fit_noise(images, labels)
if args.keep_refiner:
    model.fit_ink(images)  # the GAN's curve, then its refiner's
else:  # a refiner trained in place of the published one; train_refiner fits both curves last
    gan.train_refiner(model, train_set, config, run_dir=args.out.parent / "refiner", resume=True, verbose=0,
                      callbacks=[gan.EpochPrinter()])
if args.start is not None:
    model.refiner.start = args.start
    config = dataclasses.replace(config, refine_start=args.start)
    model.fit_ink(images)  # the refiner's curve again, on its redrawings from that start
trained = {k: published["metrics"][k] for k in ("epochs", "last_epoch", "train_seconds", "train_cpu_seconds",
                                                "recipe", "preset", "categories", "seed")}
gan.save(model, args.out, config, metrics=trained, command=published["command"])  # with the refiner's times
model = gan.load(args.out)  # judged as it ships: its weights at the file's float16 precision
trained = {k: v for k, v in model.manifest["metrics"].items() if k in trained or k.startswith("refiner_")}

judge = Classifier.load(CLASSIFIER_DIR, categories=list(model.categories))
started = time.time()
summary = metrics.evaluate_generator(model, judge, train_set, test_set, seed=0).summary()
keys = ["gan_test_top1", "fid_class_mean", "fid_class_shuffled_mean", "precision", "recall", "coverage"]
other_noises = {}
for name in () if args.own_noise_only else ("normal ±1", "normal untruncated"):
    noise = metrics.NAMED_NOISES[name]
    judged = metrics.evaluate_generator(model, judge, train_set, test_set, seed=0, **noise).summary()
    other_noises[name] = {k: judged[k] for k in keys}
eval_seconds = round(time.time() - started)
print(json.dumps(summary | {"other_noises": other_noises}, indent=1, ensure_ascii=False), flush=True)
if args.cas_epochs:
    summary |= metrics.classification_accuracy_score(model, train_set, test_set, TrainConfig(epochs=args.cas_epochs),
                                                     args.out.parent / f"cas-{model.refiner.start}", progress=False)
results = {**trained, **summary, "noise": model.noise, "refine_start": model.refiner.start,
           "other_noises": other_noises,
           "targets": {t["target"]: t["passed"] for t in metrics.generator_targets(summary)}}
gan.save(model, args.out, config, metrics=results, command=published["command"])
print(json.dumps(results, indent=1, ensure_ascii=False))
print(metrics.verdict(summary))
with open(ROWS, "a") as f:
    f.write(json.dumps({"start": model.refiner.start, "steps": model.refiner.steps, "refiner": "full preset"
                        + (", the published one, its ink curve fitted" if args.keep_refiner else ""),
                        **{k: trained[k] for k in ("refiner_epochs", "refiner_cpu_seconds")},
                        "eval_seconds": eval_seconds, **summary}) + "\n")
