"""The stroke refiner: a small label-conditioned U-Net trained by flow matching on the real training drawings, which
redraws a generated drawing's strokes as people's strokes look in the canonical form while keeping its shape.

Flow matching (rectified flow; Lipman et al. 2023, Liu et al. 2023) learns the velocity that carries noise (time 0)
to drawings (time 1) along straight paths x_t = (1 - t) noise + t drawing. Used as SDEdit uses a diffusion model
(Meng et al. 2022), a generated drawing is mixed back with noise to time `start` and carried to time 1 by a few
midpoint steps: the generator decides what is drawn and where, which survives the noise; the refiner decides how
the strokes look, which the noise erases. It is trained on times in [start - START_MARGIN, 1] alone, the only part
of the path it is asked to follow.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from drawai import seeds
from drawai.gan.config import GANInputError
from drawai.gan.data import BuiltBeforeFit, step_logs
from drawai.gan.networks import InkCurve

START_MARGIN = 0.1  # trained from a little before `start`, so the first step's midpoint is inside what it learned
TIME_FREQUENCIES = 32  # sinusoidal features of the time, as in DDPM's U-Net
STEPS = 5  # midpoint steps from `start` to 1: ten network calls a drawing
BATCH, LEARNING_RATE = 128, 5e-4  # training: Adam, as screened (docs/experiments/gan.md, "A stroke refiner")


@keras.saving.register_keras_serializable(package="drawai")
class ResidualBlock(layers.Layer):
    """Group norm, swish, 3x3 convolution, twice, the condition (time and label) added in between; a 1x1
    convolution on the skip path where the width changes."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.norm1, self.norm2 = layers.GroupNormalization(8), layers.GroupNormalization(8)
        self.conv1 = layers.Conv2D(channels, 3, padding="same")
        self.conv2 = layers.Conv2D(channels, 3, padding="same")
        self.condition = layers.Dense(channels)
        self.skip = None

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            self.skip = layers.Conv2D(self.channels, 1)

    def call(self, x, condition):
        h = self.conv1(ops.silu(self.norm1(x)))
        h = h + self.condition(condition)[:, None, None, :]
        h = self.conv2(ops.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="drawai")
class StrokeRefiner(BuiltBeforeFit, keras.Model):
    """(x_t (N, 28, 28, 1) in [-1, 1], t (N,), label (N,)) -> the velocity at x_t: a U-Net at 28, 14 and 7 pixels
    (`widths` channels), one residual block a level on each side and two at the bottom, the time and label
    added in every block. `start` and `steps`: how `refine` uses it."""

    def __init__(self, n_classes: int, widths: tuple[int, int, int] = (32, 64, 128), start: float = 0.7,
                 steps: int = STEPS, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed  # the training run's: where train_step's draws come from
        if not 0 < start < 1:
            raise GANInputError(f"the refiner's start must be a time in (0, 1), got {start!r}")
        self.n_classes, self.widths, self.start, self.steps = n_classes, tuple(widths), float(start), int(steps)
        w0, w1, w2 = self.widths
        self.label = layers.Embedding(n_classes, 128)
        self.time = layers.Dense(128, activation="silu")
        self.condition = layers.Dense(128, activation="silu")
        self.stem = layers.Conv2D(w0, 3, padding="same")
        self.down0, self.down1 = ResidualBlock(w0), ResidualBlock(w1)
        self.pool0 = layers.Conv2D(w1, 3, strides=2, padding="same")
        self.pool1 = layers.Conv2D(w2, 3, strides=2, padding="same")
        self.bottom = [ResidualBlock(w2), ResidualBlock(w2)]
        self.up1, self.up0 = ResidualBlock(w1), ResidualBlock(w0)
        self.out_norm = layers.GroupNormalization(8)
        self.out = layers.Conv2D(1, 3, padding="same")
        # Its redrawings' pixel values mapped onto the training drawings' (fitted after training, `_GAN.fit_ink`):
        # the flow leaves a faint grain on the background and few full-ink pixels, which real drawings lack.
        self.ink_curve = InkCurve(name="ink_curve")
        self.loss_tracker = keras.metrics.Mean(name="flow_loss")
        # BuiltBeforeFit: every variable exists before fit, or a load, fills it (one call on a blank drawing)
        self((np.zeros((1, 28, 28, 1), np.float32), np.zeros((1,), np.float32), np.zeros((1,), np.int32)))

    def call(self, inputs, training=False):
        x, t, labels = inputs
        angles = ops.cast(t, "float32")[:, None] * ops.exp(ops.linspace(0.0, 6.0, TIME_FREQUENCIES))[None, :]
        c = self.condition(self.time(ops.concatenate([ops.sin(angles), ops.cos(angles)], -1)) + self.label(labels))
        h0 = self.down0(self.stem(x), c)
        h1 = self.down1(self.pool0(h0), c)
        h = self.pool1(h1)
        for block in self.bottom:
            h = block(h, c)
        h = self.up1(ops.concatenate([ops.repeat(ops.repeat(h, 2, 1), 2, 2), h1], -1), c)
        h = self.up0(ops.concatenate([ops.repeat(ops.repeat(h, 2, 1), 2, 2), h0], -1), c)
        return self.out(ops.silu(self.out_norm(h)))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        """One flow-matching step on real drawings ([-1, 1]) and their labels: times uniform where `refine`
        travels, the loss the squared error of the velocity towards the drawing along its straight path. The
        draws are a function of (`seed`, the optimiser's step count) alone, so a resumed run draws what it would
        have."""
        images, labels = data
        step = tf.cast(self.optimizer.iterations, tf.int64)
        noise_seed, time_seed = (tf.stack([tf.constant(seeds.integers(self.seed, stream)[0], tf.int64), step])
                                 for stream in (seeds.REFINER_TRAIN_NOISE, seeds.REFINER_TRAIN_TIMES))
        # The whole batch's draws; under tf.distribute each replica takes its slice, as the GAN's step does.
        replica = tf.distribute.get_replica_context()
        replicas, size = replica.num_replicas_in_sync, tf.shape(images)[0]
        first = tf.cast(replica.replica_id_in_sync_group, tf.int32) * size
        noise = tf.random.stateless_normal((size * replicas, 28, 28, 1), seed=noise_seed)[first:][:size]
        low = max(self.start - START_MARGIN, 0.0)
        t = low + (1 - low) * tf.random.stateless_uniform((size * replicas,), seed=time_seed)[first:][:size]
        x_t = (1 - t[:, None, None, None]) * noise + t[:, None, None, None] * images
        with tf.GradientTape() as tape:
            loss = ops.mean((self((x_t, t, labels), training=True) - (images - noise)) ** 2)
            share = loss / replicas  # the optimiser sums the replicas' gradients: the global batch's mean
        self.optimizer.apply_gradients(zip(tape.gradient(share, self.trainable_variables), self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return step_logs(self.metrics)

    def refine(self, images: np.ndarray, labels: np.ndarray, seed: int | None) -> np.ndarray:
        """Drawings (N, 28, 28) in [0, 1] -> the same drawings redrawn: noised back to `start` (noise from
        `seed`), then `steps` midpoint steps to time 1, then through `ink_curve`. (N, 28, 28) float32 in [0, 1]."""
        x1 = np.asarray(images, np.float32)[..., None] * 2 - 1
        noise = seeds.rng(seed, seeds.REFINER_NOISE).standard_normal(x1.shape).astype(np.float32)
        x = self.start * x1 + (1 - self.start) * noise
        y = np.asarray(labels, np.int32)
        dt = (1 - self.start) / self.steps
        for i in range(self.steps):
            t = self.start + i * dt
            midway = x + 0.5 * dt * self._velocity(x, t, y)
            x = x + dt * self._velocity(midway, t + 0.5 * dt, y)
        return self.ink_curve.apply(np.clip((x[..., 0] + 1) / 2, 0, 1).astype(np.float32))

    def _velocity(self, x, t, labels):
        if getattr(self, "_predict", None) is None:  # one graph for every batch size, traced on first use
            self._predict = tf.function(lambda x, t, y: self((x, t, y)), reduce_retracing=True, autograph=False)
        return np.concatenate([self._predict(x[i:i + 1024], tf.fill((len(x[i:i + 1024]),), np.float32(t)),
                                             labels[i:i + 1024]).numpy() for i in range(0, len(x), 1024)])

    def without_training_state(self) -> StrokeRefiner:
        """A copy with these weights alone: no optimiser, so a model that ships it carries no Adam moments."""
        copy = StrokeRefiner(self.n_classes, self.widths, self.start, self.steps, self.seed, name=self.name)
        copy.set_weights(self.get_weights())
        return copy

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "widths": list(self.widths),
                "start": self.start, "steps": self.steps, "seed": self.seed}
