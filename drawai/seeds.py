"""Where random draws come from: one integer seed, split into streams by a key.

A stream is numpy's SeedSequence of [seed, *key]: `rng` for numpy, `integers` for libraries seeded with an integer
(torch's generators, TensorFlow's stateless ops). A seed given for one purpose alone (the split's, the noise of
`generate(seed)`, a fight's rounds) is drawn from bare, `rng(seed)`; a seed that serves several purposes (a training
run's) gives each purpose a stream number from the table below as the key's first element, so no two purposes draw
the same numbers. Indexes after it (an epoch, a step, a rank) make a draw a function of where a run is, so a
resumed run draws what an uninterrupted one would.

SeedSequence ignores trailing zeros ([s, 1] and [s, 1, 0] are one stream), so a stream number is never 0.
`process_group.ShardedSampler` alone keeps torch's DistributedSampler's seed + epoch, so its shards are torch's.
Generating many labels in chunks (`metrics`, `fit_ink`) passes `seed + the chunk's first label` to each
`generate` call: the published figures and the shipped ink curve were drawn that way.
"""

from __future__ import annotations

import numpy as np

# Evaluation (metrics.evaluate_generator's seed) and generation (generate(seed)).
VARIETY_HALVES = 1  # which real drawings of a class form each half of the real-vs-real reference
NOISE_CENTRES = 7  # which encoder reading each drawing of FittedNoise is drawn around
REFINER_NOISE = 8  # the noise a drawing is mixed with before the stroke refiner redraws it
# A GAN training run's seed (GANConfig.seed); its initial weights take the seed bare (keras.utils.set_random_seed).
FIT_PICK = 4  # which training drawings FittedNoise and InkCurve are fitted to
GAN_EPOCH_ORDER = 10  # the order of an epoch's drawings, (GAN_EPOCH_ORDER, epoch)
GAN_NOISE = 11  # the noise each step's fakes are drawn from, (GAN_NOISE,) then the step
GAN_AUGMENT_REAL = 12  # DiffAugment of each step's real drawings
GAN_AUGMENT_FAKE = 13  # DiffAugment of each step's generated drawings
GAN_ENCODER = 14  # the encoder's sampling of each step's readings
NOISE_FIT = 15  # which readings FittedNoise keeps as centres, where a label has more than it keeps
PER_LABEL_BANK = 16  # the per-label recipe's initial weights of each label
REFINER_TRAIN_NOISE = 17  # the noise of each step of the refiner's training, then the step
REFINER_TRAIN_TIMES = 18  # the times of each step of the refiner's training
REFINER_EPOCH_ORDER = 19  # the order of the refiner's epoch of drawings, (REFINER_EPOCH_ORDER, epoch)
REFINER_INIT = 9  # the refiner's initial weights (keras.utils.set_random_seed of this stream's integer)
# A classifier training run's seed (TrainConfig.seed); its initial weights take the seed bare (torch.manual_seed).
CLASSIFIER_ORDER = 20  # in memory: the drawings' order and heavier-stroke picks, one generator over all epochs
CLASSIFIER_EPOCH = 21  # with DataLoader workers: each (epoch, rank)'s dropout and augmentation seeds
STREAM_ORDER = 22  # NumpyBitmapDataset: each (epoch, share)'s reading order of the full dataset


def rng(seed: int | None, *key: int) -> np.random.Generator:
    """numpy's generator for the stream [seed, *key]; seed None: fresh entropy (not reproducible)."""
    return np.random.default_rng(None if seed is None else [int(seed), *map(int, key)])


def integers(seed: int, *key: int, n: int = 1) -> list[int]:
    """`n` integers in [0, 2**32) from the stream [seed, *key]: seeds for torch and TensorFlow."""
    return [int(v) for v in np.random.SeedSequence([int(seed), *map(int, key)]).generate_state(n)]
