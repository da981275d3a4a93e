"""What tests/test_scale.py starts as each tf.distribute worker: scripts/train_gan_distributed.py's main, then this
worker's generator and discriminator weights to $DRAWAI_TEST_DUMP/worker<index>.npz (TF_CONFIG's task index), so
the test can check that the workers hold identical weights (the script itself saves the chief's model only)."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

from drawai.paths import SCRIPTS  # the test starts this file with PYTHONPATH at the checkout's root

spec = importlib.util.spec_from_file_location("train_gan_distributed", SCRIPTS / "train_gan_distributed.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

model = script.main(sys.argv[1:])
index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
dump = Path(os.environ["DRAWAI_TEST_DUMP"])
dump.mkdir(parents=True, exist_ok=True)
variables = model.generator.variables + model.discriminator.variables + [model.step_counter]
np.savez(dump / f"worker{index}.npz", *[np.asarray(v.numpy()) for v in variables])
