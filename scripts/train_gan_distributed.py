"""Train the GAN on every device of one machine, or on several machines, with tf.distribute.

    # this machine: every GPU, or the CPU (MirroredStrategy); the full dataset, cached by `python -m drawai.download`
    python scripts/train_gan_distributed.py --categories all --per-class 20000 --out runs/gan-345
    # several machines: the same command on each, TF_CONFIG naming the cluster and this machine's place in it
    # (MultiWorkerMirroredStrategy); --out on storage every machine sees
    TF_CONFIG='{"cluster": {"worker": ["node0:12345", "node1:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        python scripts/train_gan_distributed.py --categories all --per-class 20000 --out /shared/runs/gan-345
    # a small part of the embedded sample
    python scripts/train_gan_distributed.py --source sample --categories classic10 --epochs 3 --out runs/gan-demo

--batch-size is the global batch: each replica takes its slice of every batch, and the result is the result of
one process (tests/test_scale.py). The chief (worker 0) writes <out>/ (checkpoints, history.json, samples/)
and at the end <out>/model/ (`gan.load`). Running the same command again resumes from the last checkpoint;
a larger --epochs continues a finished run. Use a new --out to start over.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def strategy_from_environment() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, else MirroredStrategy over this machine's
    GPUs (or its CPU). Made first thing: collective ops must be set up before TensorFlow runs anything."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from drawai import gan

    p = argparse.ArgumentParser(prog="scripts/train_gan_distributed.py", description=__doc__.split("\n")[0])
    p.add_argument("--categories", nargs="+", default=["classic10"], help="names and/or presets (classic10, all)")
    p.add_argument("--source", choices=["numpy_bitmap", "sample"], default="numpy_bitmap",
                   help="numpy_bitmap: the cached full files, memory-mapped; sample: the embedded 100 per class")
    p.add_argument("--per-class", type=int, help="use at most this many drawings of each category (before the split)")
    p.add_argument("--test-every", type=int, default=5, help="numpy_bitmap: every n-th drawing is held out")
    p.add_argument("--cache-dir", help="numpy_bitmap: default $DRAWAI_CACHE or ~/.cache/drawai/quickdraw")
    p.add_argument("--preset", choices=sorted(gan.PRESETS), default="full", help="sizes and epochs to start from")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global: split evenly across the replicas")
    p.add_argument("--width", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the run folder: checkpoints while training, model/ at the end")
    p.add_argument("--verbose", type=int, default=2, help="Keras' progress output: 0, 1 or 2")
    return p.parse_args(argv)


def main(argv: list[str] | None = None):
    """Train as the arguments say; every worker returns the (identical) model, the chief saves it."""
    strategy = strategy_from_environment()
    args = parse_args(argv)
    from drawai import categories as cats
    from drawai import data, distributed, gan
    from drawai.gan.data import is_chief

    names = cats.resolve([n for arg in args.categories for n in cats.resolve(arg)])
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("width", args.width))
                 if v is not None}
    config = gan.GANConfig.from_preset(args.preset, "conditional", categories=names, seed=args.seed, **overrides)
    if args.source == "sample":
        drawings = data.load_sample(names)
        if args.per_class:  # the first n of each category, then the shared split
            keep = np.concatenate([np.flatnonzero(drawings.labels == c)[:args.per_class] for c in range(len(names))])
            drawings = drawings.subset(np.sort(keep))
        train_set = data.train_test(drawings)[0]
    else:
        train_set = distributed.NumpyBitmapDataset(names, "train", args.per_class, args.test_every, args.cache_dir)
    out = Path(args.out)
    with strategy.scope():
        model = gan.train(train_set, config, run_dir=out, resume=True, verbose=args.verbose)
    kind = "MultiWorkerMirroredStrategy" if os.environ.get("TF_CONFIG") else "MirroredStrategy"
    launcher = f"{kind}, {strategy.num_replicas_in_sync} replicas"
    used = sys.argv[1:] if argv is None else argv
    gan.save(model, out / "model", config,  # every worker calls it; the chief writes
             command=f"python scripts/train_gan_distributed.py {shlex.join(used)}  # {launcher}")
    if is_chief(strategy):
        print(json.dumps(model.train_history[-1]))
    return model


if __name__ == "__main__":
    main()
