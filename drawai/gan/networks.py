"""The layers and networks of both recipes, and what they are fed: `noise_batch`, the noise a generator draws
from, and `diff_augment`, the differentiable augmentation of what a discriminator judges. Both are plain functions of
their seeds, kept beside the networks so that `model.py` holds only the GANs that train and draw with them.

Every custom class is registered and has get_config, so `.keras` files load with safe_mode=True (no lambdas, no
pickled code); a saved file names each class by its registered name ("drawai>ClassName"), so names stay as they are.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from drawai import seeds
from drawai.checks import is_whole
from drawai.gan.config import GANInputError


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
        rng = seeds.rng(seed, seeds.NOISE_FIT)
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
    fitted after training and applied by `generate`; a `StrokeRefiner` has its own, for its redrawings.

    The canonical form draws every stroke with one brush whose core is full ink; the generator's strokes come out
    dimmer and softer, so a classifier trained on its drawings reads real ones worse (CAS). Matching the two
    distributions of pixel values brightens the stroke cores and clears the faint haze around them; it moves no
    stroke, so what a drawing shows stays what the generator drew.
    """

    LEVELS = 257  # quantiles matched: enough for a smooth curve between 0 and full ink
    PER_LABEL = 20  # generated drawings per label that the curve is fitted on
    PER_LABEL_REFINED = 5  # for a refiner's curve (ten network calls a drawing): 1.3M pixel values on 345 labels

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
    rng = seeds.rng(seed)
    noise = rng.standard_normal((n, dim)).astype(np.float32)
    while truncation is not None and (out := np.abs(noise) > truncation).any():
        noise[out] = rng.standard_normal(int(out.sum())).astype(np.float32)
    return noise
