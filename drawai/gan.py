"""The generator: one Keras conditional DCGAN that draws any of the 345 categories, and the original
per-label recipe as a baseline behind the same API.

Two recipes, chosen by `GANConfig.recipe`:

- "conditional" (`ConditionalGAN`): ONE model for every category. The generator is the DCGAN shape
  (Dense 7x7 -> Conv2DTranspose -> Conv2DTranspose -> 28x28 tanh) with the label embedded next to
  the noise and class-conditional batch norm (each category learns its own BN scale and shift);
  the discriminator is a projection discriminator (Miyato & Koyama 2018): an unconditional score
  plus <embedding(label), features(image)>, with spectral norm on its weights, and (`aux_weight` > 0)
  AC-GAN's auxiliary category head (Odena et al. 2017), whose loss pushes every drawing towards its label.
- "per_label" (`PerLabelGAN`): the original draw-ai recipe, the TF DCGAN tutorial network
  (Dense 7x7xW -> Conv2DTranspose W/2 -> W/4 -> 1 tanh, noise 100, Adam 1e-4, batch 256; W=256
  there), one independent generator + discriminator per category. They live in a bank (every
  variable stacked over labels); each training batch holds one label, and the step copies that
  label's generator, discriminator and optimizer state into one template network, trains it and
  copies it back, so one traced step serves all labels.

Both train with their own `train_step` under `model.fit` (the keras.io "DCGAN"/"Conditional GAN"
style) on the canonical form (`bitmaps.to_canonical`) scaled to [-1, 1], and draw with
`generate(labels, n, seed)` -> float32 [0, 1] (N, 28, 28), ink bright on black, like the canonical form.
`generate` can sample the noise truncated at +-`truncation` (BigGAN's truncation trick; the `demo` preset: 0.5),
clearer drawings for less variety; `generate(..., truncation=None)` draws from the full normal.
A model trained with the encoder (`reconstruction`) also fits, per label, a density to the noise the encoder reads
from its training drawings (`FittedNoise`); `generate(..., noise="fitted")` draws from it (the `full` preset's
default): varied drawings, like people's, which N(0, 1) does not reach. Last, every model fits an `InkCurve`, the
map of its pixel values onto its training drawings' that `generate` applies (crisper strokes, nothing moved).

Training is seeded and resumable: the batch order of epoch e and the noise of step s are pure
functions of (seed, e) and (seed, s), and every epoch ends with an atomically written checkpoint
(`run_dir/checkpoints/epoch-XXXX.keras`: weights, optimizer state, step counter, and for the
per-label bank its dropout seeds too), so `resume=True` continues after a kill from the last complete
checkpoint and ends where an uninterrupted run would have.

A model on disk is a folder: `model.keras` (loaded with safe_mode=True, never executes pickled code)
and `manifest.json` in the schema of every draw-ai model folder (`drawai.model_folder`).

Past one machine (docs/scaling.md): `train` also takes the cached full dataset (`distributed.NumpyBitmapDataset`,
memory-mapped .npy files read through a `tf.data` pipeline that canonicalises each batch as it goes), and runs
under any tf.distribute strategy whose scope it is called in (`scripts/train_gan_distributed.py`):

    with tf.distribute.MirroredStrategy().scope():    # every GPU of this machine; MultiWorkerMirroredStrategy
        model = gan.train(train_set, config, run_dir)   # with TF_CONFIG for several machines

`batch_size` stays the global batch: each replica takes its slice of every batch, so the batches, the number
of steps and the checkpoints are those of one process (the chief alone writes them, and any number resumes them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from drawai import bitmaps, data, model_folder
from drawai import categories as cats
from drawai.checks import is_whole
from drawai.io import atomic_write, write_json

RECIPES = ("conditional", "per_label")
NOISES = ("normal", "fitted")  # what generate() draws its noise from (see FittedNoise)
CENTRE_STREAM = 7  # generate(seed) picks FittedNoise's centres from the stream [seed, 7], apart from its noise
# GANConfig fields the per-label recipe lacks
CONDITIONAL_ONLY = ("aux_weight", "aux_weight_start", "diff_augment", "reconstruction", "kl_weight",
                    "aux_on_redraws", "ema")
MAX_GENERATE = 10_000  # drawings per generate() call: more is almost surely a mistake (and memory)
MODEL_FILE = "model.keras"
INPUT_FORM = ("canonical 28x28 float32 [0, 1], ink bright on black (drawai.bitmaps.to_canonical); "
              "trained on it scaled to [-1, 1], generate() returns it in [0, 1]")

# Presets: `demo` trains in a few CPU minutes, `full` in under an hour on 2 cores. Both recipes get the same data,
# epochs and network width, so they are compared at (about) equal training time. How each setting was chosen, and
# what else was tried: docs/experiments/gan.md.
PRESETS: dict[str, dict] = {
    # classic10, ~1 CPU s an epoch: 150 epochs buy most of what 300 do.
    "demo": dict(categories="classic10", epochs=150, width=64, aux_weight=1.0, diff_augment=True),
    # All 345, ~55 s an epoch on 2 idle cores. The encoder's reconstruction makes every training drawing reachable
    # from some noise, so a label's drawings differ; a small AC weight, also on the redraws, names the label without
    # pulling it to one template; the smaller step keeps the losses stable. Drawn from the noise fitted to people's
    # drawings, untruncated: N(0, 1) misses the region where the encoder puts them.
    "full": dict(categories="all", epochs=50, width=64, aux_weight=0.3, diff_augment=True, reconstruction=10.0,
                 aux_on_redraws=True, lr=5e-4, noise="fitted", truncation=None),
}
# Optimiser and batch per recipe. Conditional: DCGAN's Adam beta_1=0.5 with a 10x larger step (2e-3, which
# spectral norm keeps stable) and batch 32 learns classic10 in ~1,500 steps. The per-label baseline keeps the TF
# tutorial's Adam(1e-4) and batch 256 (one batch holds all 80 training drawings of a label in the sample).
RECIPE_DEFAULTS: dict[str, dict] = {
    "conditional": dict(batch_size=32, lr=2e-3, beta_1=0.5, truncation=0.5),
    "per_label": dict(batch_size=256, lr=1e-4, beta_1=0.9, truncation=0.5),  # the same: compared as they draw
}


class GANInputError(ValueError):
    """A bad argument to the GAN: unknown label, bad count or seed, bad config."""


def _check_truncation(value, what: str = "truncation") -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, float | int)
                              or not 0.05 <= value <= 10):
        raise GANInputError(f"{what} must be a number in [0.05, 10] or None, got {value!r}")


class ModelFileError(ValueError):
    """A file or folder that is not a draw-ai GAN model or run: foreign, corrupt, unsafe or mismatched."""


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class GANConfig:
    """Everything that decides a training run. `GANConfig.from_preset("demo")` fills in a preset."""

    recipe: str = "conditional"
    categories: str | list[str] = "classic10"  # a preset name ("classic10", "all") or a list of names
    epochs: int = PRESETS["demo"]["epochs"]
    batch_size: int = RECIPE_DEFAULTS["conditional"]["batch_size"]
    lr: float = RECIPE_DEFAULTS["conditional"]["lr"]
    beta_1: float = RECIPE_DEFAULTS["conditional"]["beta_1"]
    noise_dim: int = 100
    aux_weight: float = 0.0  # conditional only: weight of AC-GAN's auxiliary category loss (0 = none)
    # conditional only: the auxiliary weight grows linearly, step by step, from this to `aux_weight` over the run
    # (None: `aux_weight` throughout): a weight that would collapse the generator from the start, reached late. It
    # trades variety for recognisability like a larger constant weight does, so no preset uses it.
    aux_weight_start: float | None = None
    # conditional only: DiffAugment (Zhao et al. 2020): every drawing the discriminator sees, real or generated,
    # shifted by up to 3 px and with a random 14x14 square blanked, differentiably, so the generator learns through
    # it. Made for GANs short of data, as here: 80 drawings a category.
    diff_augment: bool = False
    # conditional only: cVAE-GAN (Larsen et al. 2016; Zhu et al. 2017's BicycleGAN): an encoder reads the noise of
    # each real drawing and the generator draws it back from that noise (L1, weighed by this; KL 0.01 keeps the
    # encoded noise normal), beside its drawings from random noise, which the discriminator judges. Every training
    # drawing must be reachable from some noise, so the generator cannot draw one doodle per label.
    reconstruction: float = 0.0
    kl_weight: float = 0.01  # conditional only: the weight of that KL term, which pulls the encoded noise to N(0, 1)
    # conditional only: the AC-GAN loss also on the redrawn drawings, so that what the generator draws from the noise of
    # real drawings names its label as clearly as what it draws from random noise. Needs `reconstruction`, `aux_weight`.
    aux_on_redraws: bool = False
    # conditional only: the generator that draws is an exponential moving average of the trained one's weights, with
    # this momentum per step (0: none), as BigGAN and StyleGAN draw: it smooths the jitter of adversarial training.
    # No preset uses it: on the full preset's recipe it changed no figure measurably.
    ema: float = 0.0
    truncation: float | None = None  # generate()'s default noise truncation (the truncation trick); None: none
    # generate()'s default noise: "normal", the N(0, 1) it was trained on, or "fitted", each label's own density fitted
    # to the encoder's readings of its training drawings after training (FittedNoise; needs `reconstruction`).
    noise: str = "normal"
    width: int = PRESETS["demo"]["width"]  # generator channels after the Dense layer (the tutorial's 256)
    seed: int = 0
    preset: str = "custom"  # where the values came from, for the manifest

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise GANInputError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        if not isinstance(self.categories, str):
            self.categories = list(self.categories)
        cats.resolve(self.categories)  # raises UnknownCategoryError (a ValueError) with suggestions
        for name, low in (("epochs", 1), ("batch_size", 2), ("noise_dim", 1), ("width", 4), ("seed", 0)):
            value = getattr(self, name)
            if not is_whole(value, low):
                raise GANInputError(f"GANConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.width % 4:
            raise GANInputError(f"GANConfig.width must be a multiple of 4 (it is halved twice), got {self.width}")
        if not (isinstance(self.lr, float | int) and 0 < self.lr < 1):
            raise GANInputError(f"GANConfig.lr must be in (0, 1), got {self.lr!r}")
        if not (isinstance(self.beta_1, float | int) and 0 <= self.beta_1 < 1):
            raise GANInputError(f"GANConfig.beta_1 must be in [0, 1), got {self.beta_1!r}")
        if isinstance(self.aux_weight, bool) or not (isinstance(self.aux_weight, float | int)
                                                     and 0 <= self.aux_weight <= 100):
            raise GANInputError(f"GANConfig.aux_weight must be a number in [0, 100], got {self.aux_weight!r}")
        if self.recipe == "per_label" and (self.aux_weight or self.aux_weight_start is not None):
            raise GANInputError("aux_weight is for the conditional recipe (a per-label GAN has one category)")
        if self.aux_weight_start is not None and (isinstance(self.aux_weight_start, bool) or not (
                isinstance(self.aux_weight_start, float | int) and 0 <= self.aux_weight_start <= 100)):
            raise GANInputError("GANConfig.aux_weight_start must be None or a number in [0, 100], "
                                f"got {self.aux_weight_start!r}")
        if self.aux_weight_start is not None and not self.aux_weight:
            raise GANInputError("aux_weight_start needs an aux_weight > 0 to grow to")
        if not isinstance(self.diff_augment, bool):
            raise GANInputError(f"GANConfig.diff_augment must be True or False, got {self.diff_augment!r}")
        if self.recipe == "per_label" and self.diff_augment:
            raise GANInputError("diff_augment is for the conditional recipe (the per-label one is the original's)")
        if isinstance(self.reconstruction, bool) or not (isinstance(self.reconstruction, float | int)
                                                         and 0 <= self.reconstruction <= 1000):
            raise GANInputError(f"GANConfig.reconstruction must be a number in [0, 1000], got {self.reconstruction!r}")
        if self.recipe == "per_label" and self.reconstruction:
            raise GANInputError("reconstruction is for the conditional recipe")
        if isinstance(self.kl_weight, bool) or not (isinstance(self.kl_weight, float | int)
                                                    and 0 <= self.kl_weight <= 1000):
            raise GANInputError(f"GANConfig.kl_weight must be a number in [0, 1000], got {self.kl_weight!r}")
        if not isinstance(self.aux_on_redraws, bool):
            raise GANInputError(f"GANConfig.aux_on_redraws must be True or False, got {self.aux_on_redraws!r}")
        if self.aux_on_redraws and not (self.reconstruction and self.aux_weight):
            raise GANInputError("aux_on_redraws needs the encoder and the AC head: reconstruction > 0, aux_weight > 0")
        if isinstance(self.ema, bool) or not (isinstance(self.ema, float | int) and 0 <= self.ema < 1):
            raise GANInputError(f"GANConfig.ema must be a momentum in [0, 1), got {self.ema!r}")
        if self.recipe == "per_label" and self.ema:
            raise GANInputError("ema is for the conditional recipe")
        _check_truncation(self.truncation, "GANConfig.truncation")
        if self.noise not in NOISES:
            raise GANInputError(f"GANConfig.noise must be one of {NOISES}, got {self.noise!r}")
        if self.noise == "fitted" and not self.reconstruction:
            raise GANInputError("noise='fitted' needs the encoder: set reconstruction > 0")

    @classmethod
    def from_preset(cls, preset: str, recipe: str = "conditional", **overrides) -> GANConfig:
        """The `demo` or `full` preset for `recipe`, with any field overridden."""
        if preset not in PRESETS:
            raise GANInputError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")
        if recipe not in RECIPES:
            raise GANInputError(f"recipe must be one of {RECIPES}, got {recipe!r}")
        # A preset is tuned for the conditional recipe; the per-label baseline keeps its own optimiser, batch and
        # N(0, 1) noise (it has no encoder to fit a noise to).
        preset_values = {k: v for k, v in PRESETS[preset].items() if recipe == "conditional"
                         or k not in CONDITIONAL_ONLY + ("lr", "beta_1", "batch_size", "noise")}
        return cls(**{**RECIPE_DEFAULTS[recipe], **preset_values, "recipe": recipe, "preset": preset, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Networks. Every custom class is registered and has get_config, so `.keras` files load with
# safe_mode=True (no lambdas, no pickled code).


def _lrelu(x):
    return ops.leaky_relu(x, 0.2)


@keras.saving.register_keras_serializable(package="drawai")
class ConditionalBatchNorm(layers.Layer):
    """Batch norm whose scale and shift are looked up per class: how the label reaches every layer."""

    def __init__(self, n_classes: int, channels: int, momentum: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.n_classes, self.channels, self.momentum = n_classes, channels, momentum
        # With several replicas (tf.distribute), statistics over the whole batch, as in one process.
        self.norm = layers.BatchNormalization(momentum=momentum, center=False, scale=False,
                                              synchronized=tf.distribute.get_strategy().num_replicas_in_sync > 1)
        self.gamma = layers.Embedding(n_classes, channels, embeddings_initializer="ones")
        self.beta = layers.Embedding(n_classes, channels, embeddings_initializer="zeros")

    def call(self, x, labels, training=False):
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (self.channels,)  # broadcast over the spatial axes
        gamma = ops.reshape(self.gamma(labels), shape)
        beta = ops.reshape(self.beta(labels), shape)
        return self.norm(x, training=training) * gamma + beta

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "channels": self.channels,
                "momentum": self.momentum}


@keras.saving.register_keras_serializable(package="drawai")
class ConditionalGenerator(keras.Model):
    """(noise, label) -> 28x28x1 in [-1, 1]: the DCGAN tutorial generator, label-conditioned."""

    def __init__(self, n_classes: int, noise_dim: int = 100, width: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.n_classes, self.noise_dim, self.width = n_classes, noise_dim, width
        self.embed = layers.Embedding(n_classes, 32)
        self.dense = layers.Dense(7 * 7 * width, use_bias=False)
        self.up1 = layers.Conv2DTranspose(width // 2, 5, strides=1, padding="same", use_bias=False)
        self.up2 = layers.Conv2DTranspose(width // 4, 5, strides=2, padding="same", use_bias=False)
        self.to_image = layers.Conv2DTranspose(1, 5, strides=2, padding="same", activation="tanh")
        # Normalised per channel (the tutorial normalises the Dense output per unit): a per-class
        # scale and shift for each of 7*7*width units would be 100x more parameters to update.
        self.norms = [ConditionalBatchNorm(n_classes, c) for c in (width, width // 2, width // 4)]

    def call(self, inputs, training=False):
        noise, labels = inputs
        h = ops.reshape(self.dense(ops.concatenate([noise, self.embed(labels)], axis=-1)), (-1, 7, 7, self.width))
        h = _lrelu(self.norms[0](h, labels, training=training))
        h = _lrelu(self.norms[1](self.up1(h), labels, training=training))
        h = _lrelu(self.norms[2](self.up2(h), labels, training=training))
        return self.to_image(h)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "noise_dim": self.noise_dim,
                "width": self.width}


@keras.saving.register_keras_serializable(package="drawai")
class ProjectionDiscriminator(keras.Model):
    """(image, label) -> logit = w . phi(x) + embed(label) . phi(x), phi the tutorial's conv features.

    Twice the tutorial's channels (width/2, width): the discriminator is cheap next to the generator
    and a stronger one taught the generator faster. Spectral norm instead of the tutorial's dropout:
    it steadies the game, and it is deterministic, so a resumed run continues exactly.
    """

    def __init__(self, n_classes: int, width: int = 64, aux_classifier: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.n_classes, self.width, self.aux_classifier = n_classes, width, aux_classifier
        self.conv1 = layers.SpectralNormalization(layers.Conv2D(width // 2, 5, strides=2, padding="same"))
        self.conv2 = layers.SpectralNormalization(layers.Conv2D(width, 5, strides=2, padding="same"))
        self.score = layers.SpectralNormalization(layers.Dense(1))
        self.embed = layers.Embedding(n_classes, 7 * 7 * width, embeddings_initializer="zeros")
        # AC-GAN's auxiliary head (Odena et al. 2017): which category the image shows, from the same features.
        self.classify = layers.Dense(n_classes) if aux_classifier else None

    def call(self, inputs, training=False):
        return self.scores(*inputs, training=training)[0]

    def scores(self, images, labels, training=False):
        """(real/fake logit, category logits or None without the auxiliary head)."""
        h = _lrelu(self.conv1(images, training=training))
        h = _lrelu(self.conv2(h, training=training))
        phi = ops.reshape(h, (-1, 7 * 7 * self.width))
        logit = self.score(phi, training=training)[:, 0] + ops.sum(self.embed(labels) * phi, axis=-1)
        return logit, (self.classify(phi) if self.classify is not None else None)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "width": self.width,
                "aux_classifier": self.aux_classifier}


@keras.saving.register_keras_serializable(package="drawai")
class FittedNoise(layers.Layer):
    """Per label, the noise the encoder reads from the label's training drawings, as a density to draw from instead
    of N(0, 1) (Ghosh et al. 2020's ex-post density estimation).

    The encoder's readings of one label fill a region of the noise space that N(0, 1) mostly misses, which is why
    the generator redraws held-out drawings far more varied than it draws from random noise. The density is a
    kernel density estimate (Parzen 1962) over the readings: a draw picks one of the label's readings and adds
    a draw from the label's own normal around it. The kernel is the normal fitted to all of the label's readings,
    as probabilistic PCA (Tipping & Bishop 1999): `rank` principal directions and one variance for the rest, so
    a label costs noise_dim x (rank + 1) numbers rather than a full covariance. Drawn around the readings rather
    than around their mean, the noise reaches the label's several forms (a bathtub with legs and without) that
    one normal blurs into their average; the kernel's width keeps the drawings as far from the training drawings
    as unseen drawings are (`metrics`' memorisation ratio).
    """

    RANK = 16  # the principal directions kept per label: 16 of 100 held as much as the full covariance
    CENTRES = 80  # readings kept per label as kernel centres: all of the sample's 80, a seeded choice of more

    def __init__(self, n_classes: int, noise_dim: int = 100, rank: int = RANK, centres: int = CENTRES, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= rank < noise_dim:
            raise GANInputError(f"FittedNoise's rank must be in [1, noise_dim), got {rank} for noise_dim {noise_dim}")
        if not is_whole(centres, 1):
            raise GANInputError(f"FittedNoise's centres must be a positive integer, got {centres!r}")
        self.n_classes, self.noise_dim, self.rank, self.centres = n_classes, noise_dim, rank, centres
        self.mean = self.add_weight(shape=(n_classes, noise_dim), initializer="zeros", trainable=False, name="mean")
        self.directions = self.add_weight(shape=(n_classes, noise_dim, rank), initializer="zeros", trainable=False,
                                          name="directions")
        self.rest = self.add_weight(shape=(n_classes,), initializer="ones", trainable=False, name="rest")
        self.fitted = self.add_weight(shape=(), initializer="zeros", trainable=False, name="fitted")
        self.readings = self.add_weight(shape=(n_classes, centres, noise_dim), initializer="zeros", trainable=False,
                                        name="readings")
        self.counts = self.add_weight(shape=(n_classes,), initializer="zeros", trainable=False, dtype="int32",
                                      name="counts")
        self.built = True

    def load_own_variables(self, store):
        if len(store.keys()) == 4:  # saved before the kernel centres: one normal per label, as it was drawn then
            for i, variable in enumerate((self.mean, self.directions, self.rest, self.fitted)):
                variable.assign(store[str(i)])
        elif len(store.keys()):  # none in a model saved before the fitted noise: it stays unfitted
            super().load_own_variables(store)

    def fit(self, codes: np.ndarray, labels: np.ndarray, shrink: float = 0.1, seed: int = 0) -> None:
        """Fit each label's kernel to its `codes` (encoder means), its covariance shrunk by `shrink` towards the
        diagonal of the covariance pooled over labels (a few dozen readings in 100 dimensions are too few alone),
        and keep up to `centres` of its codes (a choice seeded by `seed` where it has more) as the centres."""
        codes, labels = np.asarray(codes, np.float64), np.asarray(labels)
        means = np.stack([codes[labels == c].mean(0) for c in range(self.n_classes)])
        pooled = np.diag(np.var(codes - means[labels], axis=0))
        rng = np.random.default_rng(seed)
        directions, rest = [], []
        readings = np.zeros((self.n_classes, self.centres, self.noise_dim))
        counts = np.zeros(self.n_classes, np.int32)
        for c in range(self.n_classes):
            own = codes[labels == c]
            cov = (1 - shrink) * np.cov(own.T) + shrink * pooled
            values, vectors = np.linalg.eigh(cov)
            values, vectors = values[::-1], vectors[:, ::-1]
            rest.append(values[self.rank:].mean())
            directions.append(vectors[:, :self.rank] * np.sqrt(np.maximum(values[:self.rank] - rest[-1], 0)))
            kept = own[np.sort(rng.permutation(len(own))[:self.centres])]
            readings[c, :len(kept)], counts[c] = kept, len(kept)
        self.mean.assign(means.astype(np.float32))
        self.directions.assign(np.stack(directions).astype(np.float32))
        self.rest.assign(np.sqrt(rest).astype(np.float32))
        self.readings.assign(readings.astype(np.float32))
        self.counts.assign(counts)
        self.fitted.assign(1.0)

    def draw(self, unit: np.ndarray, labels: np.ndarray, choice: np.ndarray) -> np.ndarray:
        """(n, rank + noise_dim) standard normal draws (truncated or not) and (n,) uniform [0, 1) draws that pick
        each one's centre -> (n, noise_dim) noise for `labels`. A label without centres (a model saved before
        them) is drawn around its mean."""
        mean, directions, rest, readings, counts = (ops.convert_to_numpy(v) for v in (
            self.mean, self.directions, self.rest, self.readings, self.counts))
        pick = np.minimum((np.asarray(choice) * counts[labels]).astype(np.int64), np.maximum(counts[labels] - 1, 0))
        centre = np.where(counts[labels, None] > 0, readings[labels, pick], mean[labels])
        along, around = unit[:, :self.rank], unit[:, self.rank:]
        return (centre + np.einsum("ndr,nr->nd", directions[labels], along)
                + rest[labels, None] * around).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "noise_dim": self.noise_dim, "rank": self.rank,
                "centres": self.centres}


@keras.saving.register_keras_serializable(package="drawai")
class InkCurve(layers.Layer):
    """A monotone map of the generator's pixel values onto those of its training drawings (histogram matching),
    fitted after training and applied by `generate`.

    The canonical form draws every stroke with one brush whose core is full ink; the generator's strokes come out
    dimmer and softer, so a classifier trained on its drawings reads real ones worse (CAS). Matching the two
    distributions of pixel values brightens the stroke cores and clears the faint haze around them; it moves no
    stroke, so what a drawing shows stays what the generator drew.
    """

    LEVELS = 257  # quantiles matched: enough for a smooth curve between 0 and full ink
    PER_LABEL = 20  # generated drawings per label that the curve is fitted on

    def __init__(self, levels: int = LEVELS, **kwargs):
        super().__init__(**kwargs)
        self.levels = levels
        self.source = self.add_weight(shape=(levels,), initializer="zeros", trainable=False, name="source")
        self.target = self.add_weight(shape=(levels,), initializer="zeros", trainable=False, name="target")
        self.fitted = self.add_weight(shape=(), initializer="zeros", trainable=False, name="fitted")
        self.built = True

    def load_own_variables(self, store):
        if len(store.keys()):  # none in a model saved before the curve: it stays unfitted, the identity
            super().load_own_variables(store)

    def fit(self, generated: np.ndarray, real: np.ndarray) -> None:
        """Map the quantiles of `generated`'s pixel values onto `real`'s (both in [0, 1])."""
        q = np.linspace(0, 1, self.levels)
        source = np.quantile(np.asarray(generated, np.float64), q)
        source = np.maximum.accumulate(source + q * 1e-6)  # strictly increasing where many pixels tie (at 0)
        self.source.assign(source.astype(np.float32))
        self.target.assign(np.quantile(np.asarray(real, np.float64), q).astype(np.float32))
        self.fitted.assign(1.0)

    def apply(self, images: np.ndarray) -> np.ndarray:
        if float(ops.convert_to_numpy(self.fitted)) == 0:
            return images
        source, target = (ops.convert_to_numpy(v) for v in (self.source, self.target))
        return np.interp(images, source, target).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "levels": self.levels}


@keras.saving.register_keras_serializable(package="drawai")
class ConditionalEncoder(keras.Model):
    """(image, label) -> (mean, log-variance) of the noise that draws it: the discriminator's conv features and
    the label's embedding, then one Dense layer."""

    def __init__(self, n_classes: int, noise_dim: int = 100, width: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.n_classes, self.noise_dim, self.width = n_classes, noise_dim, width
        self.conv1 = layers.Conv2D(width // 2, 5, strides=2, padding="same")
        self.conv2 = layers.Conv2D(width, 5, strides=2, padding="same")
        self.embed = layers.Embedding(n_classes, 32)
        self.out = layers.Dense(2 * noise_dim)

    def call(self, inputs, training=False):
        images, labels = inputs
        h = _lrelu(self.conv2(_lrelu(self.conv1(images))))
        h = ops.concatenate([ops.reshape(h, (-1, 7 * 7 * self.width)), self.embed(labels)], axis=-1)
        mean, log_var = ops.split(self.out(h), 2, axis=-1)
        return mean, ops.clip(log_var, -10.0, 4.0)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "noise_dim": self.noise_dim,
                "width": self.width}


@keras.saving.register_keras_serializable(package="drawai")
class DCGANGenerator(keras.Model):
    """noise -> 28x28x1 in [-1, 1]: the TF DCGAN tutorial generator (width 256 there).

    Batch-norm momentum 0.9 rather than 0.99: a per-label generator gets few steps, and generate()
    draws with the running statistics. LeakyReLU slope 0.2 (the DCGAN paper's) in all networks here.
    """

    def __init__(self, noise_dim: int = 100, width: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim, self.width = noise_dim, width
        self.dense = layers.Dense(7 * 7 * width, use_bias=False)
        self.up1 = layers.Conv2DTranspose(width // 2, 5, strides=1, padding="same", use_bias=False)
        self.up2 = layers.Conv2DTranspose(width // 4, 5, strides=2, padding="same", use_bias=False)
        self.to_image = layers.Conv2DTranspose(1, 5, strides=2, padding="same", use_bias=False, activation="tanh")
        self.norms = [layers.BatchNormalization(momentum=0.9) for _ in range(3)]

    def call(self, noise, training=False):
        h = _lrelu(self.norms[0](self.dense(noise), training=training))
        h = ops.reshape(h, (-1, 7, 7, self.width))
        h = _lrelu(self.norms[1](self.up1(h), training=training))
        h = _lrelu(self.norms[2](self.up2(h), training=training))
        return self.to_image(h)

    def get_config(self):
        return {**super().get_config(), "noise_dim": self.noise_dim, "width": self.width}


@keras.saving.register_keras_serializable(package="drawai")
class DCGANDiscriminator(keras.Model):
    """image -> logit: the TF DCGAN tutorial discriminator (64 and 128 channels for width 256)."""

    def __init__(self, width: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.conv1 = layers.Conv2D(width // 4, 5, strides=2, padding="same")
        self.conv2 = layers.Conv2D(width // 2, 5, strides=2, padding="same")
        self.drop1, self.drop2 = layers.Dropout(0.3), layers.Dropout(0.3)
        self.score = layers.Dense(1)

    def call(self, images, training=False):
        h = self.drop1(_lrelu(self.conv1(images)), training=training)
        h = self.drop2(_lrelu(self.conv2(h)), training=training)
        return self.score(ops.reshape(h, (-1, 7 * 7 * (self.width // 2))))[:, 0]

    def get_config(self):
        return {**super().get_config(), "width": self.width}


# --------------------------------------------------------------------------------------------------
# The two GANs. What they share (optimisers, the adversarial step, generate) is in _GAN.


class _GAN(keras.Model):
    recipe = ""

    def __init__(self, categories, noise_dim: int = 100, width: int = 64, lr: float = 2e-4, beta_1: float = 0.5,
                 seed: int = 0, aux_weight: float = 0.0, aux_weight_start: float | None = None,
                 diff_augment: bool = False, reconstruction: float = 0.0, kl_weight: float = 0.01,
                 aux_on_redraws: bool = False, ema: float = 0.0,
                 truncation: float | None = None, noise: str = "normal", **kwargs):
        super().__init__(**kwargs)
        self.categories = tuple(cats.resolve(list(categories)))
        self.noise_dim, self.width, self.lr, self.beta_1, self.seed = noise_dim, width, lr, beta_1, seed
        self.aux_weight = float(aux_weight)
        self.aux_weight_start = None if aux_weight_start is None else float(aux_weight_start)
        self.ramp_steps = 0  # set by `train`: the run's total steps, over which aux_weight_start grows to aux_weight
        self.diff_augment = bool(diff_augment)
        self.reconstruction, self.kl_weight = float(reconstruction), float(kl_weight)
        self.aux_on_redraws = bool(aux_on_redraws)
        self.encoder = None  # the cVAE-GAN's, built by _build_networks when reconstruction > 0
        self.fitted_noise = None  # FittedNoise, with the encoder
        self.ink_curve = InkCurve(name="ink_curve")  # fitted after training (fit_ink); until then the identity
        self.ema = float(ema)
        _check_truncation(truncation)
        self.truncation = truncation  # generate()'s default
        if noise not in NOISES:
            raise GANInputError(f"noise must be one of {NOISES}, got {noise!r}")
        self.noise = noise  # generate()'s default
        self._build_networks()
        # Optimisers are part of the model and built here, so a checkpoint restores their state.
        # With `ema`, the optimiser keeps the weights' moving average (Keras' use_ema); `finalize` draws with it.
        self.g_optimizer = keras.optimizers.Adam(lr, beta_1=beta_1, use_ema=self.ema > 0, ema_momentum=self.ema or 0.99)
        self.d_optimizer = keras.optimizers.Adam(lr, beta_1=beta_1)
        self.g_optimizer.build(self._generator_side())
        self.d_optimizer.build(self.discriminator.trainable_variables)
        # Counts training steps; the noise of step s is drawn from (seed, s), so a resumed run
        # draws the same noise as an uninterrupted one.
        self.step_counter = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                            name="step_counter")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self._build_bank()
        self.built = True

    def _build_networks(self):
        raise NotImplementedError

    def finalize(self) -> None:
        """After training: with `ema`, the generator takes the weights' moving average, which it draws with."""
        if self.ema:
            self.g_optimizer.finalize_variable_values(self._generator_side())

    def _generator_side(self) -> list:
        """The variables the generator's loss trains: its own, and the encoder's if there is one."""
        return self.generator.trainable_variables + (self.encoder.trainable_variables if self.encoder else [])

    def _build_bank(self):
        pass

    def get_config(self):
        return {**super().get_config(), "categories": list(self.categories), "noise_dim": self.noise_dim,
                "width": self.width, "lr": self.lr, "beta_1": self.beta_1, "seed": self.seed,
                "aux_weight": self.aux_weight, "aux_weight_start": self.aux_weight_start,
                "diff_augment": self.diff_augment, "reconstruction": self.reconstruction,
                "kl_weight": self.kl_weight, "aux_on_redraws": self.aux_on_redraws, "ema": self.ema,
                "truncation": self.truncation, "noise": self.noise}

    def get_compile_config(self):
        return None  # the optimisers are built in __init__; there is nothing to re-compile on loading

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Every variable is built in __init__, so fit() need not look at a batch first. (Keras' own version,
        # under a tf.distribute strategy, takes one and reduces it over the replicas, which fails under
        # MultiWorkerMirroredStrategy for an (images, labels) batch: keras 3.15.)
        with self.distribute_strategy.scope():
            self._symbolic_build()

    @property
    def metrics(self):
        return [self.g_loss_tracker, self.d_loss_tracker]

    def call(self, inputs, training=False):
        noise, labels = inputs
        return self._generator_call(noise, labels, training)

    def _adversarial_step(self, images, labels):
        """One step of the TF DCGAN tutorial: one fake batch, both networks updated from their tapes.

        Non-saturating losses: D minimises softplus(-D(real)) + softplus(D(fake)), G softplus(-D(fake)).
        With `aux_weight` > 0 (conditional only), AC-GAN's auxiliary loss on top: D's own category head learns
        the real drawings' labels, and G is also rewarded when that head reads its drawing as the requested label.
        """
        # The whole batch's noise, from (seed, step); under tf.distribute each replica takes its slice of it,
        # so the replicas together see what one process would.
        replica = tf.distribute.get_replica_context()
        replicas, size = replica.num_replicas_in_sync, tf.shape(images)[0]
        noise = tf.random.stateless_normal((size * replicas, self.noise_dim),
                                           seed=tf.stack([tf.constant(self.seed, tf.int64), self.step_counter.value]))
        first = tf.cast(replica.replica_id_in_sync_group, tf.int32) * size
        noise = noise[first:][:size]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self._generator_call(noise, labels, True)
            if self.encoder is not None:  # cVAE-GAN: draw the real drawings back from the noise the encoder reads
                mean, log_var = self.encoder((images, labels), training=True)
                eps = tf.random.stateless_normal((size * replicas, self.noise_dim), seed=self._step_seed(3))
                redrawn = self._generator_call(mean + ops.exp(0.5 * log_var) * eps[first:][:size], labels, True)
                kl = ops.mean(ops.sum(-0.5 * (1 + log_var - mean ** 2 - ops.exp(log_var)), axis=-1))
                redraw_loss = self.reconstruction * ops.mean(ops.abs(redrawn - images)) + self.kl_weight * kl
            if self.diff_augment:  # real and generated, each its own draws from (seed, step); this replica's slice
                images = diff_augment(images, self._step_seed(1), first, size * replicas)
                fake = diff_augment(fake, self._step_seed(2), first, size * replicas)
            real_logits, real_classes = self._discriminator_scores(images, labels, True)
            fake_logits, fake_classes = self._discriminator_scores(fake, labels, True)
            g_loss = ops.mean(ops.softplus(-fake_logits))
            d_loss = ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
            if real_classes is not None:  # only real drawings teach the head (fakes would teach it their mistakes)
                ce = keras.losses.sparse_categorical_crossentropy
                weight = self._aux_weight_now()
                d_loss += weight * ops.mean(ce(labels, real_classes, from_logits=True))
                g_loss += weight * ops.mean(ce(labels, fake_classes, from_logits=True))
                if self.aux_on_redraws:
                    # read in inference mode: a training call would step spectral norm's power iteration again
                    redrawn_classes = self._discriminator_scores(redrawn, labels, False)[1]
                    g_loss += weight * ops.mean(ce(labels, redrawn_classes, from_logits=True))
            if self.encoder is not None:
                g_loss += redraw_loss
            # The optimisers sum the replicas' gradients: of these shares, the sum is the global batch's mean.
            g_share, d_share = g_loss / replicas, d_loss / replicas
        g_vars, d_vars = self._generator_side(), self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_share, g_vars), g_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_share, d_vars), d_vars, strict=True))
        self.step_counter.assign_add(1)
        self.g_loss_tracker.update_state(g_loss)
        self.d_loss_tracker.update_state(d_loss)
        logs = {m.name: m.result() for m in self.metrics}
        if _multi_worker(tf.distribute.get_strategy()):  # keras 3 averages these over axis 0 (tensorflow#72388)
            logs = {name: tf.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _step_seed(self, stream: int):
        """The stateless seed of this step's draws (stream 1: DiffAugment of real drawings, 2: of generated ones, 3:
        the encoder's sampling; the noise has its own, (seed, step)): a function of (seed, step counter) alone, so a
        resumed run draws what it would have."""
        return tf.stack([tf.constant(self.seed * 8 + stream, tf.int64), self.step_counter.value])

    def _aux_weight_now(self):
        """aux_weight, or on its way there from aux_weight_start: a function of the step counter, which checkpoints
        keep, so a resumed run weighs every step as an uninterrupted one."""
        if self.aux_weight_start is None or not self.ramp_steps:
            return self.aux_weight
        done = ops.minimum(1.0, ops.cast(self.step_counter.value, "float32") / self.ramp_steps)
        return self.aux_weight_start + (self.aux_weight - self.aux_weight_start) * done

    def _discriminator_scores(self, images, labels, training):
        return self._discriminator_call(images, labels, training), None

    def label_indices(self, labels) -> np.ndarray:
        """Names or indices (one, or a list) -> int32 indices into `self.categories`."""
        items = [labels] if isinstance(labels, str | int | np.integer) else labels
        if isinstance(items, np.ndarray):
            items = items.tolist()
        if not isinstance(items, list | tuple) or not items:
            raise GANInputError(f"labels must be a category name, an index or a non-empty list of them, "
                                f"got {labels!r}")
        out = []
        for item in items:
            if isinstance(item, str):
                if item not in self.categories:
                    cats.check_name(item)  # unknown anywhere: raises with suggestions
                    raise GANInputError(f"this model draws {len(self.categories)} categories and {item!r} is "
                                        f"not one of them: {list(self.categories)}")
                out.append(self.categories.index(item))
            elif isinstance(item, int | np.integer) and not isinstance(item, bool):
                if not 0 <= item < len(self.categories):
                    raise GANInputError(f"label index {item} is out of range: this model has "
                                        f"{len(self.categories)} categories (0..{len(self.categories) - 1})")
                out.append(int(item))
            else:
                raise GANInputError(f"a label is a category name or an index, got {item!r}")
        return np.array(out, dtype=np.int32)

    @property
    def noises(self) -> tuple[str, ...]:
        """What `generate(noise=...)` can draw from: "normal", and "fitted" once the model's FittedNoise is fitted."""
        fitted = self.fitted_noise is not None and float(ops.convert_to_numpy(self.fitted_noise.fitted)) > 0
        return NOISES if fitted else ("normal",)

    def generate(self, labels, n: int = 1, seed: int | None = None, truncation: float | None | str = "model",
                 noise: str = "model") -> np.ndarray:
        """`n` drawings of each label -> float32 (n, 28, 28) in [0, 1] for one label, (len(labels) * n, 28, 28)
        for a list (label by label). The same seed gives the same drawings; seed=None draws fresh noise.
        `truncation` (BigGAN's truncation trick): noise drawn from a normal cut at +-truncation, so drawings
        nearer the typical one of each label, clearer and less varied; None draws from the full normal;
        "model" (the default) uses the model's own setting, `self.truncation` (its config's).
        `noise`: "normal" draws from N(0, 1), as the generator was trained; "fitted" from each label's density fitted
        to the encoder's readings of its training drawings (`FittedNoise`: more varied, as people draw; a model
        with an encoder has it); "model" (the default): `self.noise`. Truncation cuts either (for "fitted", the
        kernel's draws around each reading).
        """
        idx = self.label_indices(labels)
        if not is_whole(n, 1):
            raise GANInputError(f"n (drawings per label) must be a positive integer, got {n!r}")
        if len(idx) * n > MAX_GENERATE:
            raise GANInputError(f"{len(idx)} labels x n={n} is {len(idx) * n} drawings; at most {MAX_GENERATE} "
                                "per call (call generate in a loop for more)")
        if seed is not None and not is_whole(seed, 0):
            raise GANInputError(f"seed must be a non-negative integer or None, got {seed!r}")
        if isinstance(truncation, str) and truncation == "model":
            truncation = self.truncation
        _check_truncation(truncation)
        noise = self.noise if isinstance(noise, str) and noise == "model" else noise
        if noise not in NOISES:
            raise GANInputError(f"noise must be one of {NOISES} or 'model', got {noise!r}")
        labels = np.repeat(idx, n)
        if noise == "normal":
            z = noise_batch(len(labels), self.noise_dim, seed, truncation)
        elif "fitted" not in self.noises:
            raise GANInputError("noise='fitted' needs a generator trained with the encoder (reconstruction > 0) and "
                                "its noise fitted (gan.train does it; or model.fit_noise(images, labels))")
        else:
            unit = noise_batch(len(labels), self.fitted_noise.rank + self.noise_dim, seed, truncation)
            choice = np.random.default_rng(None if seed is None else [seed, CENTRE_STREAM]).random(len(labels))
            z = self.fitted_noise.draw(unit, labels, choice)
        images = self._generate(z, labels)
        return self.ink_curve.apply(np.clip((images[..., 0] + 1) / 2, 0, 1).astype(np.float32))

    def fit_ink(self, images: np.ndarray) -> None:
        """Fit `ink_curve` to these drawings ([-1, 1], e.g. the training drawings) against `InkCurve.PER_LABEL`
        drawings of every label generated from the model's default noise, untruncated (seeded; so a truncation set
        later draws through the same curve); `train` does it last."""
        self.ink_curve.fitted.assign(0.0)  # fitted on what the generator draws itself
        n, per_call = len(self.categories), MAX_GENERATE // InkCurve.PER_LABEL
        generated = np.concatenate([self.generate(list(range(i, min(i + per_call, n))), InkCurve.PER_LABEL,
                                                  seed=self.seed + i, truncation=None) for i in range(0, n, per_call)])
        self.ink_curve.fit(generated, (np.asarray(images) + 1) / 2)

    def _generate(self, noise: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.concatenate([ops.convert_to_numpy(self._generator_call(noise[i:i + 1024], labels[i:i + 1024],
                                                                         False))
                               for i in range(0, len(noise), 1024)])


@keras.saving.register_keras_serializable(package="drawai")
class ConditionalGAN(_GAN):
    """One conditional DCGAN for all categories: `ConditionalGenerator` + `ProjectionDiscriminator`."""

    recipe = "conditional"

    def _build_networks(self):
        n = len(self.categories)
        self.generator = ConditionalGenerator(n, self.noise_dim, self.width, name="generator")
        self.discriminator = ProjectionDiscriminator(n, self.width, aux_classifier=self.aux_weight > 0,
                                                     name="discriminator")
        # Build every variable now (calling once), so a loaded file has somewhere to go.
        fake = self.generator((np.zeros((1, self.noise_dim), np.float32), np.zeros((1,), np.int32)))
        self.discriminator((fake, np.zeros((1,), np.int32)))
        if self.reconstruction > 0:
            self.encoder = ConditionalEncoder(n, self.noise_dim, self.width, name="encoder")
            self.encoder((fake, np.zeros((1,), np.int32)))
            self.fitted_noise = FittedNoise(n, self.noise_dim, min(FittedNoise.RANK, self.noise_dim - 1),
                                            name="fitted_noise")

    def fit_noise(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Fit `fitted_noise` to the encoder's readings (means) of these drawings ([-1, 1], (N, 28, 28, 1)), every
        label among them; `train` does it at the end with the training drawings."""
        if self.encoder is None:
            raise GANInputError("fit_noise needs the encoder: a model trained with reconstruction > 0")
        counts = np.bincount(labels, minlength=len(self.categories))
        if counts.min() < 2:
            raise GANInputError(f"fit_noise needs at least 2 drawings of every label; "
                                f"{self.categories[int(np.argmin(counts))]!r} has {counts.min()}")
        codes = np.concatenate([ops.convert_to_numpy(self.encoder((images[i:i + 1024], labels[i:i + 1024]))[0])
                                for i in range(0, len(images), 1024)])
        self.fitted_noise.fit(codes, labels, seed=self.seed)

    def _generator_call(self, noise, labels, training):
        return self.generator((noise, labels), training=training)

    def _discriminator_call(self, images, labels, training):
        return self.discriminator((images, labels), training=training)

    def _discriminator_scores(self, images, labels, training):
        return self.discriminator.scores(images, labels, training=training)

    def train_step(self, data):
        images, labels = data
        return self._adversarial_step(images, labels)


@keras.saving.register_keras_serializable(package="drawai")
class PerLabelGAN(_GAN):
    """The original recipe: an independent tutorial DCGAN per label, kept in a bank of stacked variables.

    `generator` / `discriminator` / the optimisers are one template "slot"; `bank[i][k]` holds label
    k's copy of slot variable i. A training batch has one label: the step loads that label into the
    slot, trains, and stores it back, all inside one traced function.
    """

    recipe = "per_label"

    def __init__(self, *args, random_bank: bool = True, **kwargs):
        self._random_bank = random_bank
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config(cls, config):
        return cls(**config, random_bank=False)  # the weights file fills the bank: skip drawing a start

    def _build_networks(self):
        self.generator = DCGANGenerator(self.noise_dim, self.width, name="generator")
        self.discriminator = DCGANDiscriminator(self.width, name="discriminator")
        self.discriminator(self.generator(np.zeros((1, self.noise_dim), np.float32)))

    def _slot_variables(self):
        # Everything a separate model per label would own: weights, BN statistics, Adam moments and step counts.
        return (self.generator.variables + self.discriminator.variables + self.g_optimizer.variables
                + self.d_optimizer.variables)

    def _build_bank(self):
        k = len(self.categories)
        rng = np.random.default_rng(self.seed)
        self.bank = []
        for i, v in enumerate(self._slot_variables()):
            bank_var = self.add_weight(shape=(k, *v.shape), dtype=v.dtype, initializer="zeros", trainable=False,
                                       name=f"bank_{i}")
            if self._random_bank:
                # Keras' initialisers draw every element independently, so shuffling a fresh
                # initialisation gives each label its own random start (constants stay constants).
                value = ops.convert_to_numpy(v)
                bank_var.assign(np.stack([rng.permutation(value.ravel()).reshape(value.shape) for _ in range(k)]))
            self.bank.append(bank_var)
        self.n_generator_variables = len(self.generator.variables)

    def _load_label(self, k, generator_only=False):
        pairs = list(zip(self._slot_variables(), self.bank, strict=True))
        for v, b in pairs[:self.n_generator_variables] if generator_only else pairs:
            v.assign(tf.gather(b.value, k))

    def _store_label(self, k):
        for v, b in zip(self._slot_variables(), self.bank, strict=True):
            b.value.scatter_nd_update(tf.reshape(k, (1, 1)), tf.expand_dims(v.value, 0))

    def _generator_call(self, noise, labels, training):
        return self.generator(noise, training=training)

    def _discriminator_call(self, images, labels, training):
        return self.discriminator(images, training=training)

    def train_step(self, data):
        images, labels = data
        k = labels[0]  # batches are built one label at a time (see `epoch_batches`)
        self._load_label(k)
        logs = self._adversarial_step(images, labels)
        self._store_label(k)
        return logs

    def _generate(self, noise: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = np.zeros((len(noise), 28, 28, 1), np.float32)
        for k in np.unique(labels):
            rows = np.flatnonzero(labels == k)
            self._load_label(int(k), generator_only=True)
            out[rows] = super()._generate(noise[rows], labels[rows])
        return out


GAN_CLASSES = {cls.recipe: cls for cls in (ConditionalGAN, PerLabelGAN)}


def diff_augment(images, seed, first=0, total=None, shift: int = 3, cut: int = 14):
    """DiffAugment's translation and cutout (Zhao et al. 2020) for drawings in [-1, 1] (N, 28, 28, 1), background -1:
    each image moved by up to `shift` px each way (what moves out is gone, what comes in is background) and a
    `cut` x `cut` square at a random centre set to background. Differentiable in `images`. The draws are a pure
    function of `seed` (two int64s) over a batch of `total` (default N), of which these images are rows
    [first, first + N): the slice one replica of a distributed step takes."""
    n = tf.shape(images)[0]
    total = n if total is None else total
    size = images.shape[1]
    draws = tf.random.stateless_uniform((total, 4), seed=seed)[first:][:n]
    dy, dx = (tf.cast(tf.floor(draws[:, k] * (2 * shift + 1)), tf.int32) - shift for k in (0, 1))
    cy, cx = (tf.cast(tf.floor(draws[:, k] * size), tf.int32) for k in (2, 3))
    grid = tf.range(size)
    rows = grid[None, :] - dy[:, None]  # the source row of each output row
    cols = grid[None, :] - dx[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    moved = tf.gather(tf.gather(images[..., 0], tf.clip_by_value(rows, 0, size - 1), batch_dims=1),
                      tf.clip_by_value(cols, 0, size - 1), axis=2, batch_dims=1)
    in_cut = ((tf.abs(grid[None, :] - cy[:, None]) <= cut // 2 - 1)[:, :, None]
              & (tf.abs(grid[None, :] - cx[:, None]) <= cut // 2 - 1)[:, None, :])
    keep = inside & ~in_cut
    return tf.where(keep, moved, -tf.ones_like(moved))[..., None]


def noise_batch(n: int, dim: int, seed: int | None, truncation: float | None = None) -> np.ndarray:
    """(n, dim) float32 standard normal noise from `seed`; with `truncation`, every value outside
    +-truncation is drawn again until none is (a normal truncated there, as in BigGAN)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, dim)).astype(np.float32)
    while truncation is not None and (out := np.abs(noise) > truncation).any():
        noise[out] = rng.standard_normal(int(out.sum())).astype(np.float32)
    return noise


def build(config: GANConfig, categories: list[str] | None = None) -> ConditionalGAN | PerLabelGAN:
    """A fresh, untrained model for `config` (seeded: the same config gives the same initial weights)."""
    keras.utils.set_random_seed(config.seed)
    return GAN_CLASSES[config.recipe](categories or cats.resolve(config.categories), noise_dim=config.noise_dim,
                                      width=config.width, lr=config.lr, beta_1=config.beta_1, seed=config.seed,
                                      truncation=config.truncation, noise=config.noise,
                                      **({k: getattr(config, k) for k in CONDITIONAL_ONLY}
                                         if config.recipe == "conditional" else {}),
                                      name=f"{config.recipe}_gan")


# --------------------------------------------------------------------------------------------------
# Data: the canonical form in [-1, 1], and a batch order that depends only on (seed, epoch).


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


def epoch_batches(labels: np.ndarray, epoch: int, batch_size: int, seed: int, one_label: bool) -> list[np.ndarray]:
    """Index batches for `epoch`. Mixed labels: a shuffle cut into full batches (the rest waits for the next
    epoch's shuffle). `one_label`: each label's drawings shuffled and cut into near-equal batches of at most
    `batch_size`, the batches of all labels in shuffled order. The same number of batches every epoch.
    """
    rng = np.random.default_rng([seed, epoch])
    if not one_label:
        size = min(batch_size, len(labels))
        order = rng.permutation(len(labels))
        return list(order[: len(order) // size * size].reshape(-1, size))
    out = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out += np.array_split(idx, -(-len(idx) // batch_size))
    return [out[i] for i in rng.permutation(len(out))]


def _dataset(images, labels, epochs: range, batch_size: int, seed: int, one_label: bool):
    """All batches of `epochs` as one tf.data pipeline, and the number of batches and images per epoch."""
    batches = [b for e in epochs for b in epoch_batches(labels, e, batch_size, seed, one_label)]
    per_epoch = len(batches) // len(epochs)
    index = tf.RaggedTensor.from_row_lengths(np.concatenate(batches), [len(b) for b in batches])
    x, y = tf.constant(images), tf.constant(labels)

    def gather(i):
        return tf.gather(x, i), tf.gather(y, i)

    images_per_epoch = sum(len(b) for b in batches[:per_epoch])
    return tf.data.Dataset.from_tensor_slices(index).map(gather).prefetch(2), per_epoch, images_per_epoch


def _streamed_dataset(load, labels, epochs: range, batch_size: int, seed: int, one_label: bool):
    """The batches of `epochs` (the same `epoch_batches`), each read by `load(indices) -> (images, labels)` when
    it is needed, in a tf.data pipeline. Under a tf.distribute strategy every batch is cut into one slice per
    replica, and each worker's pipeline makes just its own replicas' slices (`distribute_datasets_from_function`
    deals them out to its replicas in turn)."""
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    first = epoch_batches(labels, epochs[0], batch_size, seed, one_label)

    def pipeline(mine: range) -> tf.data.Dataset:
        def indices():
            for epoch in epochs:
                for batch in epoch_batches(labels, epoch, batch_size, seed, one_label):
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


def _file_loader(dataset):
    """Batches of a `distributed.NumpyBitmapDataset` (memory-mapped files): the rows asked for, canonical, [-1, 1]."""
    def load(index):
        raw, labels = dataset.raw(index)
        return training_arrays(data.Drawings(raw, labels, dataset.categories, dataset.source))
    return load


def _check_same(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Fail on every worker, rather than hang in a collective later, when the workers disagree about `value`
    (the sum over replicas is `value` times their number on every worker only if all hold the same)."""
    if strategy.num_replicas_in_sync > 1:
        total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(value, tf.int64)), axis=None)
        if int(total) != value * strategy.num_replicas_in_sync:
            raise ModelFileError(f"the workers disagree about {what}: this one has {value}")


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Several processes (MultiWorkerMirroredStrategy with a TF_CONFIG cluster of more than one)."""
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, but with several workers the chief only (or worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task = getattr(resolver, "task_type", None)
    if not task:
        return True
    return task == "chief" or (task == "worker" and resolver.task_id == 0
                               and "chief" not in resolver.cluster_spec().as_dict())


# --------------------------------------------------------------------------------------------------
# Files: atomic writes, the run folder (checkpoints, history, sample grids), the model folder.


def _save_compact(model: _GAN, path: Path) -> None:
    """Save `model` for shipping: the networks as they are, the optimisers' state zeroed, deflated.

    Adam's moments are two thirds of the file and only matter for continuing training, which resumes
    from the run's checkpoints, not from a shipped model; zeros deflate to almost nothing (345-category
    conditional GAN: 20.8 MB as a checkpoint, about a third of that here). Loads like any `.keras` file.
    """
    slots = [v for opt in (model.g_optimizer, model.d_optimizer) for v in opt.variables]
    kept = [v.numpy() for v in slots]
    try:
        for v in slots:
            v.assign(np.zeros(v.shape, v.dtype))
        model.save(path)
    finally:
        for v, value in zip(slots, kept, strict=True):
            v.assign(value)
    with zipfile.ZipFile(path) as src:  # Keras stores; deflate the zeros away, in place
        items = [(item.filename, src.read(item)) for item in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data_ in items:
            dst.writestr(name, data_)


def _load_keras(path: Path) -> ConditionalGAN | PerLabelGAN:
    """Load a `.keras` file that must hold a draw-ai GAN; anything else is a ModelFileError."""
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a .keras archive (corrupt or a different kind of file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a failed load also warns; the error below says it all
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:
        raise ModelFileError(f"{path} could not be loaded as a draw-ai GAN (safe_mode=True): "
                             f"{type(e).__name__}: {str(e)[:400]}") from e
    if not isinstance(model, tuple(GAN_CLASSES.values())):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a draw-ai GAN "
                             f"({', '.join(c.__name__ for c in GAN_CLASSES.values())})")
    return model


def grid_image(images: np.ndarray, rows: int) -> np.ndarray:
    """(rows * cols, 28, 28) in [0, 1] -> one uint8 picture, a 2 px grey line between drawings."""
    cols = len(images) // rows
    out = np.full((rows * 30 + 2, cols * 30 + 2), 64, np.uint8)
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        out[2 + r * 30: 30 + r * 30, 2 + c * 30: 30 + c * 30] = np.round(img * 255)
    return out


class SampleGrid(keras.callbacks.Callback):
    """After every epoch, draw `n` of each of (up to) 10 labels from fixed noise: arrays in `.grids`
    (epoch -> (labels * n, 28, 28)) and, with `folder`, a PNG `epoch-XXXX.png` (rows are labels)."""

    def __init__(self, labels=None, n: int = 8, seed: int = 1234, folder: str | Path | None = None):
        super().__init__()
        self.labels, self.n, self.seed = labels, n, seed
        self.folder = Path(folder) if folder else None
        self.grids: dict[int, np.ndarray] = {}

    def on_epoch_end(self, epoch, logs=None):
        labels = self.labels if self.labels is not None else list(range(min(10, len(self.model.categories))))
        # the fitted noise exists only once training ends; until then, the N(0, 1) the generator trains on
        noise = "model" if self.model.noise in self.model.noises else "normal"
        images = self.model.generate(labels, self.n, self.seed, noise=noise)
        self.grids[epoch + 1] = images
        if self.folder:
            from PIL import Image

            self.folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(grid_image(images, len(images) // self.n)).resize(
                (2 * (self.n * 30 + 2), 2 * (len(images) // self.n * 30 + 2)), Image.Resampling.NEAREST)
            atomic_write(self.folder / f"epoch-{epoch + 1:04d}.png", lambda p: picture.save(p, format="PNG"))


class EpochLog(keras.callbacks.Callback):
    """Appends every epoch's losses, time and images/s to `history`; with `run_dir`, then writes
    `checkpoints/epoch-XXXX.keras` and `history.json` atomically (checkpoint first: history never names
    an epoch that has no checkpoint), keeping the last `keep` checkpoints."""

    def __init__(self, history: list[dict], images_per_epoch: int, run_dir: Path | None = None, keep: int = 2,
                 chief: bool = True):
        super().__init__()
        self.history, self.images_per_epoch, self.run_dir, self.keep = history, images_per_epoch, run_dir, keep
        self.chief = chief  # with several workers, the others save too (in step with it) but keep nothing

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        # Wall time says how long it took; CPU time (all threads) says how much work it was, even
        # on a machine shared with other jobs.
        seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        self.history.append({"epoch": epoch + 1, **{k: round(float(v), 5) for k, v in (logs or {}).items()},
                             "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                             "images_per_s": round(self.images_per_epoch / seconds, 1)})
        if self.run_dir is None:
            return
        if not self.chief:
            _take_part_in_save(self.model)
            return
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"epoch-{epoch + 1:04d}.keras", self.model.save)
        write_json(self.run_dir / "history.json", self.history)
        for old in _checkpoints(self.run_dir)[: -self.keep]:
            old[1].unlink()


class EpochPrinter(keras.callbacks.Callback):
    """One printed line per epoch: epoch/total, g_loss, d_loss, elapsed time and ETA (`drawai.progress`). A job
    streams it to the terminal: `train(..., verbose=0, callbacks=[EpochPrinter()])`."""

    def on_train_begin(self, logs=None):
        from drawai.progress import StepPrinter

        self.printer = StepPrinter(self.params["epochs"], "epoch")

    def on_epoch_end(self, epoch, logs=None):
        losses = {k: float(np.ravel(v)[0]) for k, v in (logs or {}).items() if k in ("g_loss", "d_loss")}
        self.printer(epoch + 1, "  ".join(f"{k} {v:.3f}" for k, v in sorted(losses.items(), reverse=True)))


def _take_part_in_save(model) -> None:
    """What a worker other than the chief does where the chief saves: the same save, into a folder that is then
    deleted. Under MultiWorkerMirroredStrategy reading some variables is a collective op every worker must join."""
    with tempfile.TemporaryDirectory(prefix="drawai-save-") as tmp:
        model.save(Path(tmp) / MODEL_FILE)


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob("epoch-*.keras")
             if (m := re.fullmatch(r"epoch-(\d+)\.keras", p.name))]
    return sorted(found)


def _resume_point(run_dir: Path, run_record: dict) -> tuple[int, ConditionalGAN | PerLabelGAN | None, list[dict]]:
    """(epochs done, model, history) from the last loadable checkpoint of a run, or (0, None, [])."""
    for stale in (Path(run_dir) / "checkpoints").glob(".*.tmp-*"):  # a write cut short by a kill: never read
        stale.unlink()
    record_path = run_dir / "run.json"
    if record_path.exists():
        differ = _record_differences(json.loads(record_path.read_text()), run_record)
        if differ:
            raise ModelFileError(f"{run_dir} holds a different run (differs in: {differ}); "
                                 "use a new run_dir, or the same config and data")
    for epoch, path in reversed(_checkpoints(run_dir)):
        try:
            model = _load_keras(path)
        except ModelFileError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=3)
            continue
        history_path = run_dir / "history.json"
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        return epoch, model, [h for h in history if h["epoch"] <= epoch]
    return 0, None, []


def _record_differences(a: dict, b: dict) -> list[str]:
    """The keys in which two run records differ, except `epochs`, which may grow on resume (an epoch's
    batches do not depend on the total; an auxiliary weight's ramp stretches), `preset`, a label, and `truncation`,
    which only changes generate(). A config field missing from a record (written before it existed) had its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(GANConfig)}

    def flat(record):
        config = {f"config.{k}": v for k, v in {**defaults, **record.get("config", {})}.items()
                  if k not in ("epochs", "preset", "truncation")}
        return {**{k: v for k, v in record.items() if k != "config"}, **config}

    a, b = flat(json.loads(json.dumps(a))), flat(json.loads(json.dumps(b)))  # as JSON has them: tuples are lists
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def configure_threads() -> None:
    """One intra-op pool over the CPUs this process may use, and no inter-op pool on top of it
    (the GAN step is one chain of ops: two pools only oversubscribe a small machine)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(len(os.sched_getaffinity(0)))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already started: threads are fixed for this process


def train(train_set, config: GANConfig, run_dir: str | Path | None = None,
          resume: bool = False, callbacks: list | None = None, verbose="auto") -> ConditionalGAN | PerLabelGAN:
    """Train a GAN on `train_set` (None: the embedded sample's training split of `config.categories`).

    `train_set` is `data.Drawings` (held in memory) or a `distributed.NumpyBitmapDataset` (the cached full
    dataset, read batch by batch). Called inside a tf.distribute strategy's scope, training is spread over its
    replicas (see the module docstring).
    With `run_dir`, every epoch writes a checkpoint, `history.json` and a sample grid PNG there, and
    `resume=True` continues from the last complete checkpoint (a finished run returns at once).
    The per-epoch log (losses, seconds, CPU seconds, images/s) is `model.train_history`.
    """
    if resume and run_dir is None:
        raise GANInputError("resume=True needs the run_dir of the run to continue")
    configure_threads()
    if train_set is None:
        train_set = data.train_test(data.load_sample(config.categories))[0]
    if list(train_set.categories) != cats.resolve(config.categories):
        raise GANInputError(f"the drawings' categories ({len(train_set.categories)}) are not config.categories "
                            f"({config.categories!r}); set config.categories to match")
    strategy = tf.distribute.get_strategy()  # the default one (one process, no copies) outside any scope
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and config.recipe == "per_label":
        raise GANInputError("the per_label recipe trains one label's network per batch and is not distributed; "
                            "use recipe='conditional' with several replicas")
    if config.batch_size % replicas:
        raise GANInputError(f"batch_size {config.batch_size} must be divisible by the {replicas} replicas")
    in_memory = isinstance(train_set, data.Drawings)
    if in_memory:
        images, labels = training_arrays(train_set)
    else:  # the full dataset: labels now, images batch by batch
        labels = train_set.item_labels().astype(np.int32)
    record = {"kind": "drawai.gan.run", "config": config.to_dict(), "data_checksum": train_set.checksum,
              "data_source": train_set.source, "n_train": len(labels)}
    chief = _is_chief(strategy)  # with several workers, the chief writes the run folder; every worker reads it
    start, model, history = 0, None, []
    if run_dir is not None:
        run_dir = Path(run_dir)
        if _checkpoints(run_dir) and not resume:
            raise ModelFileError(f"{run_dir} already has checkpoints; pass resume=True to continue that run, "
                                 "or use a new run_dir (nothing was overwritten)")
        if resume:
            start, model, history = _resume_point(run_dir, record)
        if chief:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "run.json", record)
    if model is None:
        model = build(config, list(train_set.categories))
    model.truncation = config.truncation  # a checkpoint may have been written under another (generate-only) setting
    model.train_record = record
    _check_same(strategy, start, f"the epoch to start from ({run_dir} must be storage every worker sees)")
    if start >= config.epochs:
        model.train_history = history
        model.finalize()
        _fit_after_training(model, train_set, images if in_memory else None, labels)
        return model
    epochs, one_label = range(start, config.epochs), config.recipe == "per_label"
    if in_memory and not tf.distribute.has_strategy():  # the plain case: every batch gathered from memory
        dataset, steps, images_per_epoch = _dataset(images, labels, epochs, config.batch_size, config.seed, one_label)
    else:
        load = (lambda index: (images[index], labels[index])) if in_memory else _file_loader(train_set)
        dataset, steps, images_per_epoch = _streamed_dataset(load, labels, epochs, config.batch_size, config.seed,
                                                             one_label)
    model.ramp_steps = config.epochs * steps  # the whole run's, wherever it starts
    model.compile(optimizer=None, jit_compile=False)
    all_callbacks = [EpochLog(history, images_per_epoch, run_dir, chief=chief)]
    if run_dir is not None and chief:
        all_callbacks.append(SampleGrid(folder=run_dir / "samples"))
    all_callbacks += list(callbacks or [])
    model.fit(dataset, epochs=config.epochs, initial_epoch=start, steps_per_epoch=steps, callbacks=all_callbacks,
              shuffle=False, verbose=verbose)
    model.train_history = history
    model.finalize()
    _fit_after_training(model, train_set, images if in_memory else None, labels)
    return model


def _fit_after_training(model, train_set, images, labels, per_label: int = 500) -> None:
    """Fit the model's FittedNoise (with an encoder), then its InkCurve, to the training drawings: at most
    `per_label` of each label (a seeded choice, the same on every worker), read from the files when the drawings
    are not in memory."""
    rng = np.random.default_rng([model.seed, 4])
    pick = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_label]
                                   for c in range(len(model.categories))]))
    if images is None:
        images, _ = _file_loader(train_set)(pick)
    else:
        images = images[pick]
    if model.encoder is not None:
        model.fit_noise(images, labels[pick])
    model.fit_ink(images)


# --------------------------------------------------------------------------------------------------
# The model folder.


def save(model: ConditionalGAN | PerLabelGAN, path: str | Path, config: GANConfig | None = None,
         data_checksum: str | None = None, metrics: dict | None = None, command: str | None = None) -> Path:
    """Write `path/model.keras` and then `path/manifest.json` (`drawai.model_folder`). Config and data default to
    what `train` recorded. A folder that holds anything but a draw-ai generator is refused untouched.
    With several workers (MultiWorkerMirroredStrategy), every worker calls this and only the chief writes."""
    path = Path(path)
    if not _is_chief(model.distribute_strategy):
        _take_part_in_save(model)
        return path
    try:
        model_folder.check_writable(path, "generator")
    except model_folder.ModelFolderError as e:
        raise ModelFileError(str(e)) from None
    record = getattr(model, "train_record", None) or {}
    made = getattr(model, "manifest", None) or {}  # a loaded model saved again keeps what its manifest says
    history = getattr(model, "train_history", None) or []
    path.mkdir(parents=True, exist_ok=True)
    weights = atomic_write(path / MODEL_FILE, lambda p: _save_compact(model, p))
    data = {"source": record.get("data_source", made.get("data", {}).get("source", "")),
            "checksum": data_checksum if data_checksum is not None else
            record.get("data_checksum", made.get("data", {}).get("checksum", "")),
            "train_drawings": record.get("n_train", made.get("data", {}).get("train_drawings"))}
    trained = ({"epochs": history[-1]["epoch"], "last_epoch": history[-1],
                "train_seconds": round(sum(h["seconds"] for h in history), 1),
                "train_cpu_seconds": round(sum(h.get("cpu_seconds", 0) for h in history), 1)} if history else {})
    manifest = model_folder.make_manifest(
        "generator", model.categories, weights, data,
        config.to_dict() if config else record.get("config") or made.get("config") or model.get_config(),
        {**(made.get("metrics", {}) if not history else {}), **trained, **(metrics or {})},
        command if command is not None else shlex.join(sys.argv),
        recipe=model.recipe, input_form=INPUT_FORM, versions={"keras": keras.__version__, "tensorflow": tf.__version__})
    model_folder.write(path, manifest)
    return path


def load(path: str | Path) -> ConditionalGAN | PerLabelGAN:
    """Load a model folder written by `save`, checking the manifest against the weights (safe_mode=True)."""
    path = Path(path)
    try:
        manifest = model_folder.read(path, "generator")
        weights = model_folder.weights_path(path, manifest)
    except model_folder.ModelFolderError as e:
        raise ModelFileError(str(e)) from None
    model = _load_keras(weights)
    if model.recipe != manifest.get("recipe") or list(model.categories) != manifest["categories"]:
        raise ModelFileError(f"{weights} ({model.recipe}, {len(model.categories)} categories) does not match its "
                             f"manifest ({manifest.get('recipe')}, {len(manifest['categories'])})")
    model.manifest = manifest
    return model
