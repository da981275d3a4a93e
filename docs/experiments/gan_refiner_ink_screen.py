"""The refiner's ink curve as a screen (docs/experiments/gan.md, "The refiner's ink curve"): the drawings a CAS run
trained on (its `generated.npz`, redrawn by the refiner, before the refiner had a curve of its own) mapped onto the
pixel values of the real training drawings, one monotone curve (what `gan.InkCurve` does), and the classifier recipe
(30 epochs) trained on them and scored on the real test split, as CAS is. Checkpointed in OUT: run again to resume.
The row is appended to gan-refiner-345.jsonl.

    python docs/experiments/gan_refiner_ink_screen.py runs/train-gan/<run>/cas runs/gan-refiner-ink/<name> "what"
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from drawai import categories, classifier, data, gan
from drawai.data import Drawings

ROWS = Path(__file__).with_name("gan-refiner-345.jsonl")
ap = argparse.ArgumentParser()
ap.add_argument("cas_dir", type=Path, help="a CAS run folder: its generated.npz")
ap.add_argument("out", type=Path, help="the checkpoints of the classifier trained here")
ap.add_argument("what", help="which generator drew them, for the row")
args = ap.parse_args()

names = categories.resolve("all")
train_set, test_set = data.train_test(data.load_sample(names))
real = (gan.training_arrays(train_set)[0] + 1) / 2
with np.load(args.cas_dir / "generated.npz", allow_pickle=False) as npz:
    drawn, labels = npz["images"].astype(np.float32), npz["labels"]
curve = gan.InkCurve()
curve.fit(drawn[::4], real)  # a quarter of them: 5.4M pixel values
matched = curve.apply(drawn)
stats = {f"{what}_{name}": round(float(value), 4) for what, images in (("drawn", drawn), ("matched", matched),
                                                                     ("real", real))
         for name, value in (("full_ink", (images > 0.999).mean()), ("blank", (images == 0).mean()))}
print(json.dumps(stats), flush=True)
_, history = classifier.train(Drawings(matched, labels, tuple(names), "generated drawings, matched after refining",
                                       hashlib.sha256(matched.tobytes()).hexdigest()),
                              classifier.TrainConfig(), test_set, checkpoint_dir=args.out, resume=True,
                              progress=False, canonical=True, on_epoch=lambda row: print(json.dumps(row), flush=True))
row = {"refiner": args.what, "ink_curve_after_refining": True, "cas_top1": round(history[-1]["top1"], 4),
       "cas_top5": round(history[-1]["top5"], 4), "cas_epochs": len(history), **stats}
print(json.dumps(row))
with open(ROWS, "a") as f:
    f.write(json.dumps(row) + "\n")
