"""CAS of the published generator-345 on the drawings of another seed (docs/experiments/gan.md, "The refiner's ink
curve"): how far CAS moves between seeds. The classifier recipe's 30 epochs on 80 drawings a category drawn with
SEED, scored on the real test split; the real-trained reference does not depend on it (55.45 % in the runs beside
it). Drawings and checkpoints in runs/cas-seed/SEED: run again to resume. The row is appended to
gan-refiner-345.jsonl.

    python docs/experiments/gan_cas_seed.py 1
"""

import json
import sys
import time
from pathlib import Path

from drawai import classifier, data, gan, metrics
from drawai.paths import GENERATOR_DIR, ROOT

ROWS = Path(__file__).with_name("gan-refiner-345.jsonl")
seed = int(sys.argv[1])
run = ROOT / "runs" / "cas-seed" / str(seed)
model = gan.load(GENERATOR_DIR)
train_set, test_set = data.train_test(data.load_sample(list(model.categories)))
started = time.time()
drawn = metrics.cas_drawings(model, train_set, test_set, run, seed=seed)
_, history = classifier.train(drawn, classifier.TrainConfig(), test_set, checkpoint_dir=run / "cas", resume=True,
                              progress=False, canonical=True, on_epoch=lambda row: print(json.dumps(row), flush=True))
row = {"refiner": "generator-345 as published, CAS drawings of another seed", "cas_seed": seed,
       "cas_top1": round(history[-1]["top1"], 4), "cas_top5": round(history[-1]["top5"], 4),
       "cas_epochs": len(history)}
print(json.dumps(row), f"({time.time() - started:.0f} s)")
with open(ROWS, "a") as f:
    f.write(json.dumps(row) + "\n")
