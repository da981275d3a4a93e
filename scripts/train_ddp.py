"""Train the classifier in one or many processes: the command line of drawai/distributed.py.

    # the full dataset (files cached by `python -m drawai.download all`), 4 GPUs or 4 CPU processes:
    torchrun --standalone --nproc_per_node=4 scripts/train_ddp.py --categories all --per-class 20000 \\
        --workers 6 --out runs/ddp-345
    # a small part of the embedded sample, 2 processes:
    torchrun --standalone --nproc_per_node=2 scripts/train_ddp.py --source sample --categories classic10 \\
        --per-class 50 --epochs 3 --out runs/ddp-demo

Plain `python scripts/train_ddp.py ...` is one process. Running the same command again resumes from
<out>/checkpoint/ (on any number of processes); --fresh starts over. Rank 0 writes <out>/model/, a
draw-ai model folder (`Classifier.load`). docs/scaling.md has the flags for several machines.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from drawai import categories as cats  # noqa: E402
from drawai import classifier, data, distributed, process_group  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/train_ddp.py", description=__doc__.split("\n")[0])
    p.add_argument("--categories", nargs="+", default=["classic10"], help="names and/or presets (classic10, all)")
    p.add_argument("--source", choices=["numpy_bitmap", "sample"], default="numpy_bitmap",
                   help="numpy_bitmap: the cached full files, memory-mapped; sample: the embedded 100 per class")
    p.add_argument("--per-class", type=int, help="use at most this many drawings of each category (before the split)")
    p.add_argument("--eval-per-class", type=int, default=1000,
                   help="numpy_bitmap: test drawings per category scored after every epoch (0: none)")
    p.add_argument("--test-every", type=int, default=5, help="numpy_bitmap: every n-th drawing is held out")
    p.add_argument("--cache-dir", help="numpy_bitmap: default $DRAWAI_CACHE or ~/.cache/drawai/quickdraw")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per training process")
    p.add_argument("--arch", default="cnn", choices=sorted(classifier.ARCHITECTURES))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256, help="global: split evenly across the processes")
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default; torchrun "
                   "sets OMP_NUM_THREADS=1 for several processes a machine)")
    p.add_argument("--out", required=True, help="run folder: checkpoint/ while training, model/ at the end")
    p.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out and start over")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def datasets(args) -> tuple:
    names = cats.resolve([n for arg in args.categories for n in cats.resolve(arg)])
    if args.source == "sample":
        drawings = data.load_sample(names)
        if args.per_class:  # the first n of each category, then the shared stratified split
            keep = np.concatenate([np.flatnonzero(drawings.labels == c)[:args.per_class] for c in range(len(names))])
            drawings = drawings.subset(np.sort(keep))
        return data.train_test(drawings)  # the shared split; --seed varies the training
    train = distributed.NumpyBitmapDataset(names, "train", args.per_class, args.test_every, args.cache_dir)
    test = None
    if args.eval_per_class:
        cap = args.eval_per_class * args.test_every  # rows 0..cap-1 hold eval_per_class test drawings
        cap = min(cap, args.per_class) if args.per_class else cap
        test = distributed.NumpyBitmapDataset(names, "test", cap, args.test_every, args.cache_dir)
    return train, test


def main(argv: list[str] | None = None) -> classifier.Classifier:
    """Train as the arguments say; every process returns the (identical) classifier, rank 0 saves it."""
    args = parse_args(argv)
    rank, world = process_group.setup()
    try:
        train, test = datasets(args)
        config = classifier.TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                        seed=args.seed, augment=not args.no_augment, threads=args.threads)
        out = Path(args.out)
        clf, history = classifier.train(train, config, test_set=test, checkpoint_dir=out / "checkpoint",
                                        resume=not args.fresh, progress=not args.no_progress,
                                        num_workers=args.workers)
        if rank == 0:
            args_used = sys.argv[1:] if argv is None else argv
            launcher = "python" if world == 1 else f"torchrun ({world} processes)"
            clf.manifest["command"] = f"{launcher} scripts/train_ddp.py {shlex.join(args_used)}"
            clf.manifest["processes"] = world
            clf.save(out / "model")
            print(json.dumps(history[-1]))
        process_group.barrier()
        return clf
    finally:
        process_group.teardown()


if __name__ == "__main__":
    main()
