"""What training reads, and how a run is shared out: the drawings as arrays in [-1, 1] (canonical form), a batch
order that depends only on (seed, epoch), the tf.data pipelines that feed those batches (gathered from memory, or read
from files batch by batch and dealt out to the replicas), and the tf.distribute helpers that say which worker writes
and check that the workers agree."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from drawai import bitmaps, data, seeds
from drawai.gan.config import GANInputError, ModelFileError


def training_arrays(drawings: data.Drawings) -> tuple[np.ndarray, np.ndarray]:
    """Drawings -> (images (N, 28, 28, 1) float32 in [-1, 1] in the canonical form, labels int32).

    Drawings that `bitmaps.to_canonical` cannot read are left out with a warning: the embedded sample
    has 19 (of 34,500) filled-in scribbles that are mostly ink, 6 of them blackberries.
    """
    x, _ = bitmaps.as_float_images(drawings.images)
    readable = bitmaps.readable(x)
    if not len(readable):
        raise GANInputError(f"none of the {len(drawings)} drawings can be trained on (empty or not line drawings)")
    if len(readable) < len(drawings):
        skipped = sorted({drawings.categories[c] for c in np.delete(drawings.labels, readable)})
        warnings.warn(f"left out {len(drawings) - len(readable)} of {len(drawings)} drawings that are not "
                      f"readable line drawings (empty or mostly ink), in: {', '.join(skipped)}", stacklevel=2)
    images = bitmaps.to_canonical(x[readable]).reshape(-1, 28, 28, 1)
    return images * 2 - 1, drawings.labels[readable].astype(np.int32)


def epoch_batches(labels: np.ndarray, epoch: int, batch_size: int, seed: int, one_label: bool,
                  order: int = seeds.GAN_EPOCH_ORDER) -> list[np.ndarray]:
    """Index batches for `epoch`. Mixed labels: a shuffle cut into full batches (the rest waits for the next
    epoch's shuffle). `one_label`: each label's drawings shuffled and cut into near-equal batches of at most
    `batch_size`, the batches of all labels in shuffled order. The same number of batches every epoch. `order`:
    the `drawai.seeds` stream of the model being trained (the GAN's, or its refiner's).
    """
    rng = seeds.rng(seed, order, epoch)
    if not one_label:
        size = min(batch_size, len(labels))
        order = rng.permutation(len(labels))
        return list(order[: len(order) // size * size].reshape(-1, size))
    out = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out += np.array_split(idx, -(-len(idx) // batch_size))
    return [out[i] for i in rng.permutation(len(out))]


def memory_dataset(images, labels, epochs: range, batch_size: int, seed: int, one_label: bool,
                   order: int = seeds.GAN_EPOCH_ORDER):
    """All batches of `epochs` as one tf.data pipeline, and the number of batches and images per epoch."""
    batches = [b for e in epochs for b in epoch_batches(labels, e, batch_size, seed, one_label, order)]
    per_epoch = len(batches) // len(epochs)
    index = tf.RaggedTensor.from_row_lengths(np.concatenate(batches), [len(b) for b in batches])
    x, y = tf.constant(images), tf.constant(labels)

    def gather(i):
        return tf.gather(x, i), tf.gather(y, i)

    images_per_epoch = sum(len(b) for b in batches[:per_epoch])
    return tf.data.Dataset.from_tensor_slices(index).map(gather).prefetch(2), per_epoch, images_per_epoch


def streamed_dataset(load, labels, epochs: range, batch_size: int, seed: int, one_label: bool,
                     order: int = seeds.GAN_EPOCH_ORDER):
    """The batches of `epochs` (the same `epoch_batches`), each read by `load(indices) -> (images, labels)` when
    it is needed, in a tf.data pipeline. Under a tf.distribute strategy every batch is cut into one slice per
    replica, and each worker's pipeline makes just its own replicas' slices (`distribute_datasets_from_function`
    deals them out to its replicas in turn)."""
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    first = epoch_batches(labels, epochs[0], batch_size, seed, one_label, order)

    def pipeline(mine: range) -> tf.data.Dataset:
        def indices():
            for epoch in epochs:
                for batch in epoch_batches(labels, epoch, batch_size, seed, one_label, order):
                    pieces = np.array_split(batch, replicas)
                    yield from (pieces[r] for r in mine)

        def read(index):
            images, labels_ = load(index)
            return images.astype(np.float32), labels_.astype(np.int32)

        def read_batch(index):
            images, labels_ = tf.numpy_function(read, [index], (tf.float32, tf.int32), stateful=False)
            return tf.ensure_shape(images, (None, 28, 28, 1)), tf.ensure_shape(labels_, (None,))

        stream = tf.data.Dataset.from_generator(indices, output_signature=tf.TensorSpec((None,), tf.int64))
        return stream.map(read_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)

    if not tf.distribute.has_strategy():
        dataset = pipeline(range(1))
    else:
        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = replicas // context.num_input_pipelines
            return pipeline(range(context.input_pipeline_id * local, (context.input_pipeline_id + 1) * local))
        dataset = strategy.distribute_datasets_from_function(per_worker)
    return dataset, len(first), sum(len(b) for b in first)


def file_loader(dataset):
    """Batches of a `distributed.NumpyBitmapDataset` (memory-mapped files): the rows asked for, canonical, [-1, 1]."""
    def load(index):
        raw, labels = dataset.raw(index)
        return training_arrays(data.Drawings(raw, labels, dataset.categories, dataset.source))
    return load


def check_same(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Fail on every worker, rather than hang in a collective later, when the workers disagree about `value`
    (the sum over replicas is `value` times their number on every worker only if all hold the same)."""
    if strategy.num_replicas_in_sync > 1:
        total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(value, tf.int64)), axis=None)
        if int(total) != value * strategy.num_replicas_in_sync:
            raise ModelFileError(f"the workers disagree about {what}: this one has {value}")


class BuiltBeforeFit:
    """Mixed into a keras.Model whose every variable (its optimisers' too) exists before `fit`, so fit need not look
    at a batch first. (Keras' own build, under a tf.distribute strategy, takes one and reduces it over the replicas,
    which fails under MultiWorkerMirroredStrategy for an (images, labels) batch: keras 3.15.)"""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        with self.distribute_strategy.scope():
            self._symbolic_build()


def step_logs(metrics: list) -> dict:
    """What a train_step returns: each metric's result by name (under several workers shaped (1,), because Keras 3
    averages the workers' logs over axis 0, tensorflow#72388)."""
    logs = {m.name: m.result() for m in metrics}
    if multi_worker(tf.distribute.get_strategy()):
        logs = {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


def multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Several processes (MultiWorkerMirroredStrategy with a TF_CONFIG cluster of more than one)."""
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, but with several workers the chief only (or worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task = getattr(resolver, "task_type", None)
    if not task:
        return True
    return task == "chief" or (task == "worker" and resolver.task_id == 0
                               and "chief" not in resolver.cluster_spec().as_dict())
