"""The stroke refiner on generator-345 (docs/experiments/gan.md, "A stroke refiner"): a `gan.refiner.StrokeRefiner`
trained by flow matching on the 80 training drawings of each of the 345 categories for a budget of CPU seconds
(checkpointed each epoch: run again to resume), then generator-345's drawings redrawn by it (SDEdit from `start`)
judged by `metrics.evaluate_generator` with models/classifier-345, and CAS (15 epochs, the real-trained reference in
the same run; --cas-epochs for another count). Rows appended to gan-refiner-345.jsonl.

    python docs/experiments/gan_refiner_screen.py train runs/gan-refiner 1200
    python docs/experiments/gan_refiner_screen.py judge runs/gan-refiner 0.5 5 [--cas] [--cas-epochs 30]
    python docs/experiments/gan_refiner_screen.py score runs/gan-refiner/judged-0.6-5.npy

`score` prints the GAN-test top-1 of drawings a `judge` saved, for a run stopped before its CAS.
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from drawai import classifier, data, gan, metrics, model_folder, seeds
from drawai.classifier import Classifier
from drawai.gan.refiner import StrokeRefiner
from drawai.io import atomic_write, write_json
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR

ROWS = Path(__file__).with_name("gan-refiner-345.jsonl")
BATCH, LR = 128, 5e-4


class Refined:
    """generator-345 with its drawings redrawn by the refiner: what evaluate_generator and CAS judge."""

    def __init__(self, generator, refiner):
        self.generator, self.refiner, self.categories = generator, refiner, list(generator.categories)

    def generate(self, labels, n=1, seed=None, **options):
        drawn = self.generator.generate(labels, n, seed, refine=False, **options)  # the GAN alone, not its own refiner
        indexes = np.repeat(self.generator.label_indices(labels), n)
        return self.refiner.refine(drawn, indexes, seed)


def train(run: Path, budget: float) -> None:
    run.mkdir(parents=True, exist_ok=True)
    names = list(gan.load(GENERATOR_DIR).categories)
    images, labels = gan.training_arrays(data.train_test(data.load_sample(names))[0])
    keras.utils.set_random_seed(0)
    refiner = StrokeRefiner(len(names), start=0.5, seed=0)
    refiner.compile(optimizer=keras.optimizers.Adam(LR))
    state = {"epoch": 0, "cpu_seconds": 0.0, "losses": []}
    if (run / "state.json").exists():  # resume: weights and Adam's moments from the last finished epoch
        state = json.loads((run / "state.json").read_text())
        refiner = keras.models.load_model(run / "refiner.keras", safe_mode=True)
    while state["cpu_seconds"] < budget:
        order = seeds.rng(0, state["epoch"]).permutation(len(images))[: len(images) // BATCH * BATCH]
        batches = tf.data.Dataset.from_tensor_slices((images[order], labels[order])).batch(BATCH)
        started = time.process_time()
        loss = refiner.fit(batches, epochs=1, verbose=0, shuffle=False).history["flow_loss"][-1]
        state["epoch"] += 1
        state["cpu_seconds"] += time.process_time() - started
        state["losses"].append(round(float(loss), 5))
        atomic_write(run / "refiner.keras", refiner.save)
        write_json(run / "state.json", state)
        print(f"epoch {state['epoch']}: flow loss {loss:.4f}, {state['cpu_seconds']:.0f} CPU s", flush=True)


def judge(run: Path, start: float, steps: int, cas: bool, cas_epochs: int = 15) -> None:
    names = list(gan.load(GENERATOR_DIR).categories)
    train_set, test_set = data.train_test(data.load_sample(names))
    refiner = keras.models.load_model(run / "refiner.keras", safe_mode=True)
    refiner.start, refiner.steps = start, steps
    model = Refined(gan.load(GENERATOR_DIR), refiner)
    state = json.loads((run / "state.json").read_text())
    started = time.time()
    evaluation = metrics.evaluate_generator(model, Classifier.load(CLASSIFIER_DIR), train_set, test_set)
    row = {"start": start, "steps": steps, "refiner_epochs": state["epoch"],
           "refiner_cpu_seconds": round(state["cpu_seconds"]), "eval_seconds": round(time.time() - started),
           **evaluation.summary()}
    np.save(run / f"judged-{start}-{steps}.npy", evaluation.generated)
    if cas:
        recipe = classifier.TrainConfig(epochs=cas_epochs)
        row.update(metrics.classification_accuracy_score(model, train_set, test_set, recipe,
                                                         run_dir=run / f"cas-{start}-{steps}-{cas_epochs}",
                                                         progress=False))
        row["cas_epochs"] = cas_epochs
    print(json.dumps(row), flush=True)
    with open(ROWS, "a") as f:
        f.write(json.dumps(row) + "\n")


def score(judged: Path) -> None:
    drawn = np.load(judged, allow_pickle=False)
    judge_model = Classifier.load(CLASSIFIER_DIR, categories=model_folder.read(GENERATOR_DIR)["categories"])
    labels = np.repeat(np.arange(len(judge_model.categories)), len(drawn) // len(judge_model.categories))
    scores = classifier.top_k(judge_model.probabilities(drawn, canonical=True), labels)
    print(json.dumps({"judged": str(judged), **{k: round(v, 4) for k, v in scores.items()}}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["train", "judge", "score"])
    ap.add_argument("run", type=Path)
    ap.add_argument("numbers", nargs="*", type=float)
    ap.add_argument("--cas", action="store_true")
    ap.add_argument("--cas-epochs", type=int, default=15)
    args = ap.parse_args()
    if args.what == "score":
        score(args.run)
    elif args.what == "train":
        train(args.run, args.numbers[0] if args.numbers else 1200)
    else:
        judge(args.run, args.numbers[0], int(args.numbers[1]), args.cas, args.cas_epochs)
