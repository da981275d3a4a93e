"""The refiner's optimiser (docs/experiments/gan.md, "The refiner in `generate`"): a `StrokeRefiner` trained as
`gan.train_refiner` trains the `full` preset's (3 epochs, times 0.6-1, batch 128, the same seeds and batch order)
but with another learning rate, a cosine schedule (`--cosine`, `--warmup` steps from a tenth of `--lr`) or Adam's
weight average (`--ema`), then its flow-matching loss on the 345 categories' held-out drawings at fixed times and
fixed noise. `--eval-only PATH` judges a saved refiner (the preset's: runs/gan-refit/refiner/checkpoints/
refiner-0003.keras). Rows appended to gan-refiner-optimiser-345.jsonl.

    python docs/experiments/gan_refiner_optimiser_screen.py cosine --lr 1e-3 --cosine --warmup 60
"""
import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from drawai import data, gan, seeds
from drawai.gan import training
from drawai.gan.io import load_keras
from drawai.gan.refiner import BATCH, StrokeRefiner
from drawai.paths import GENERATOR_DIR, ROOT

ap = argparse.ArgumentParser()
ap.add_argument("name")
ap.add_argument("--lr", type=float, default=5e-4)
ap.add_argument("--cosine", action="store_true")
ap.add_argument("--warmup", type=int, default=0)
ap.add_argument("--ema", type=float, default=0.0)
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--width", type=int, default=32)
ap.add_argument("--eval-only", type=Path)
args = ap.parse_args()
training.configure_threads()
model = gan.load(GENERATOR_DIR)
train_set, test_set = data.train_test(data.load_sample(list(model.categories)))
images, labels = gan.training_arrays(train_set)
config = gan.GANConfig.from_preset("full")
out = ROOT / "runs" / "refiner-optimiser"
out.mkdir(parents=True, exist_ok=True)
ROWS = Path(__file__).with_name("gan-refiner-optimiser-345.jsonl")
t0 = time.time()
if args.eval_only:
    refiner = load_keras(args.eval_only, "refiner")
else:
    keras.utils.set_random_seed(seeds.integers(config.seed, seeds.REFINER_INIT)[0])
    w = args.width
    refiner = StrokeRefiner(len(model.categories), (w, 2 * w, 4 * w), config.refine_start, seed=config.seed,
                            name="refiner")
    steps_per_epoch = -(-len(images) // BATCH)
    lr = args.lr
    if args.cosine:
        total = steps_per_epoch * args.epochs
        lr = keras.optimizers.schedules.CosineDecay(args.lr / 10 if args.warmup else args.lr, total - args.warmup,
                                                    warmup_target=args.lr if args.warmup else None,
                                                    warmup_steps=args.warmup)
    opt = keras.optimizers.Adam(lr, use_ema=args.ema > 0, ema_momentum=args.ema or 0.99)
    refiner.compile(optimizer=opt)
    refiner.optimizer.build(refiner.trainable_variables)
    dataset, steps, _ = training._batches(train_set, images, labels, range(0, args.epochs), BATCH, config.seed, False,
                                          seeds.REFINER_EPOCH_ORDER)
    refiner.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, shuffle=False, verbose=2)
    refiner.save(out / f"{args.name}.keras")
train_seconds = time.time() - t0
# held-out loss: test drawings, fixed noise and times
x1, y = gan.training_arrays(test_set)
rng = np.random.default_rng(0)
losses = {}
for t in (0.6, 0.7, 0.8, 0.9):
    noise = rng.standard_normal(x1.shape).astype(np.float32)
    xt = (1 - t) * noise + t * x1
    pred = np.concatenate([refiner((xt[i:i+1024], np.full(len(xt[i:i+1024]), t, np.float32), y[i:i+1024])).numpy()
                           for i in range(0, len(xt), 1024)])
    losses[t] = float(np.mean((pred - (x1 - noise)) ** 2))
row = {"name": args.name, "lr": args.lr, "cosine": args.cosine, "warmup": args.warmup, "ema": args.ema,
       "epochs": args.epochs, "width": args.width, "train_seconds": round(train_seconds), "heldout": losses,
       "mean": float(np.mean(list(losses.values())))}
print(json.dumps(row))
with open(ROWS, "a") as f:
    f.write(json.dumps(row) + "\n")
