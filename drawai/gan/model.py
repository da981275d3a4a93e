"""The two GANs behind one API: `_GAN` holds what they share (optimisers, the adversarial step, `generate`),
`ConditionalGAN` and `PerLabelGAN` their own networks and training step, and `build` makes a fresh one for a
`GANConfig`."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from drawai import categories as cats
from drawai import seeds
from drawai.checks import is_whole
from drawai.gan.config import (
    CONDITIONAL_ONLY,
    MAX_GENERATE,
    NOISES,
    GANConfig,
    GANInputError,
    check_truncation,
)
from drawai.gan.data import BuiltBeforeFit, step_logs
from drawai.gan.networks import (
    ConditionalEncoder,
    ConditionalGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    FittedNoise,
    InkCurve,
    ProjectionDiscriminator,
    diff_augment,
    noise_batch,
)
from drawai.gan.refiner import StrokeRefiner


class _GAN(BuiltBeforeFit, keras.Model):
    """What both recipes share: the optimisers, the adversarial step, `generate` and the fitted noise and ink."""

    recipe = ""

    def __init__(self, categories, noise_dim: int = 100, width: int = 64, lr: float = 2e-4, beta_1: float = 0.5,
                 seed: int = 0, aux_weight: float = 0.0, aux_weight_start: float | None = None,
                 diff_augment: bool = False, reconstruction: float = 0.0, kl_weight: float = 0.01,
                 aux_on_redraws: bool = False, ema: float = 0.0,
                 truncation: float | None = None, noise: str = "normal", refiner: StrokeRefiner | dict | None = None,
                 **kwargs):
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
        check_truncation(truncation)
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
        # The StrokeRefiner generate() redraws with: trained after the GAN (`train`, `attach_refiner`); a loaded
        # model rebuilds it from its config, and its weights load into it.
        self.refiner = None
        if refiner is not None:
            self.refiner = (refiner if isinstance(refiner, StrokeRefiner)
                            else keras.saving.deserialize_keras_object(refiner))
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
                "truncation": self.truncation, "noise": self.noise,
                "refiner": None if self.refiner is None else keras.saving.serialize_keras_object(self.refiner)}

    def attach_refiner(self, refiner: StrokeRefiner) -> None:
        """From now on, `generate` redraws every drawing with `refiner` (a trained StrokeRefiner for these
        categories); the model keeps its weights, not its optimiser's state."""
        if not isinstance(refiner, StrokeRefiner) or refiner.n_classes != len(self.categories):
            raise GANInputError(f"attach_refiner needs a StrokeRefiner for this model's {len(self.categories)} "
                                f"categories, got {refiner!r}")
        self.refiner = refiner.without_training_state()

    def get_compile_config(self):
        return None  # the optimisers are built in __init__; there is nothing to re-compile on loading

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
        noise = tf.random.stateless_normal((size * replicas, self.noise_dim), seed=self._step_seed(seeds.GAN_NOISE))
        first = tf.cast(replica.replica_id_in_sync_group, tf.int32) * size
        noise = noise[first:][:size]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self._generator_call(noise, labels, True)
            if self.encoder is not None:  # cVAE-GAN: draw the real drawings back from the noise the encoder reads
                mean, log_var = self.encoder((images, labels), training=True)
                eps = tf.random.stateless_normal((size * replicas, self.noise_dim),
                                               seed=self._step_seed(seeds.GAN_ENCODER))
                redrawn = self._generator_call(mean + ops.exp(0.5 * log_var) * eps[first:][:size], labels, True)
                kl = ops.mean(ops.sum(-0.5 * (1 + log_var - mean ** 2 - ops.exp(log_var)), axis=-1))
                redraw_loss = self.reconstruction * ops.mean(ops.abs(redrawn - images)) + self.kl_weight * kl
            if self.diff_augment:  # real and generated, each its own draws from (seed, step); this replica's slice
                images = diff_augment(images, self._step_seed(seeds.GAN_AUGMENT_REAL), first, size * replicas)
                fake = diff_augment(fake, self._step_seed(seeds.GAN_AUGMENT_FAKE), first, size * replicas)
            real_logits, real_classes = self._discriminator_scores(images, labels, True)
            fake_logits, fake_classes = self._discriminator_scores(fake, labels, True)
            g_loss = ops.mean(ops.softplus(-fake_logits))
            d_loss = ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
            if real_classes is not None:  # only real drawings teach the head (fakes would teach it their mistakes)
                ce = keras.losses.sparse_categorical_crossentropy
                weight = self.aux_weight_now()
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
        return step_logs(self.metrics)

    def _step_seed(self, stream: int):
        """The stateless seed of this step's draws from `stream` (a `drawai.seeds` number): a function of (seed,
        stream, step counter) alone, so a resumed run draws what it would have."""
        return tf.stack([tf.constant(seeds.integers(self.seed, stream)[0], tf.int64), self.step_counter.value])

    def aux_weight_now(self):
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
                 noise: str = "model", refine: bool = True) -> np.ndarray:
        """`n` drawings of each label -> float32 (n, 28, 28) in [0, 1] for one label, (len(labels) * n, 28, 28)
        for a list (label by label). The same seed gives the same drawings; seed=None draws fresh noise.
        `truncation` (BigGAN's truncation trick): noise drawn from a normal cut at +-truncation, so drawings
        nearer the typical one of each label, clearer and less varied; None draws from the full normal;
        "model" (the default) uses the model's own setting, `self.truncation` (its config's).
        `noise`: "normal" draws from N(0, 1), as the generator was trained; "fitted" from each label's density fitted
        to the encoder's readings of its training drawings (`FittedNoise`: more varied, as people draw; a model
        with an encoder has it); "model" (the default): `self.noise`. Truncation cuts either (for "fitted", the
        kernel's draws around each reading).
        `refine`: with a refiner (`self.refiner`), redraw every drawing's strokes with it, from noise drawn from
        `seed` too; False: the GAN's drawings as they are.
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
        check_truncation(truncation)
        noise = self.noise if isinstance(noise, str) and noise == "model" else noise
        if noise not in NOISES:
            raise GANInputError(f"noise must be one of {NOISES} or 'model', got {noise!r}")
        if not isinstance(refine, bool | np.bool_):
            raise GANInputError(f"refine must be True or False, got {refine!r}")
        labels = np.repeat(idx, n)
        if noise == "normal":
            z = noise_batch(len(labels), self.noise_dim, seed, truncation)
        elif "fitted" not in self.noises:
            raise GANInputError("noise='fitted' needs a generator trained with the encoder (reconstruction > 0) and "
                                "its noise fitted (gan.train does it; or model.fit_noise(images, labels))")
        else:
            unit = noise_batch(len(labels), self.fitted_noise.rank + self.noise_dim, seed, truncation)
            choice = seeds.rng(seed, seeds.NOISE_CENTRES).random(len(labels))
            z = self.fitted_noise.draw(unit, labels, choice)
        images = self._generate(z, labels)
        drawings = self.ink_curve.apply(np.clip((images[..., 0] + 1) / 2, 0, 1).astype(np.float32))
        return self.refiner.refine(drawings, labels, seed) if refine and self.refiner is not None else drawings

    def fit_ink(self, images: np.ndarray) -> None:
        """Fit `ink_curve` to these drawings ([-1, 1], e.g. the training drawings) against `InkCurve.PER_LABEL`
        drawings of every label generated from the model's default noise, untruncated (seeded; so a truncation set
        later draws through the same curve); then, with a refiner, the refiner's own curve against
        `InkCurve.PER_LABEL_REFINED` of every label as the refiner redraws them. `train` does it last, and again
        after the refiner."""
        real = (np.asarray(images) + 1) / 2
        self.ink_curve.fitted.assign(0.0)  # each curve is fitted on what is drawn without it
        self.ink_curve.fit(self._drawings_for_ink(InkCurve.PER_LABEL, refine=False), real)
        if self.refiner is not None:
            self.refiner.ink_curve.fitted.assign(0.0)
            self.refiner.ink_curve.fit(self._drawings_for_ink(InkCurve.PER_LABEL_REFINED, refine=True), real)

    def _drawings_for_ink(self, per_label: int, refine: bool) -> np.ndarray:
        n, per_call = len(self.categories), MAX_GENERATE // per_label
        return np.concatenate([self.generate(list(range(i, min(i + per_call, n))), per_label, seed=self.seed + i,
                                             truncation=None, refine=refine) for i in range(0, n, per_call)])

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
        rng = seeds.rng(self.seed, seeds.PER_LABEL_BANK)
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


def build(config: GANConfig, categories: list[str] | None = None) -> ConditionalGAN | PerLabelGAN:
    """A fresh, untrained model for `config` (seeded: the same config gives the same initial weights)."""
    keras.utils.set_random_seed(config.seed)
    return GAN_CLASSES[config.recipe](categories or cats.resolve(config.categories), noise_dim=config.noise_dim,
                                      width=config.width, lr=config.lr, beta_1=config.beta_1, seed=config.seed,
                                      truncation=config.truncation, noise=config.noise,
                                      **({k: getattr(config, k) for k in CONDITIONAL_ONLY}
                                         if config.recipe == "conditional" else {}),
                                      name=f"{config.recipe}_gan")
