"""The generator (drawai/gan/): tiny models on a few real drawings, so the whole file runs in well under 2 minutes."""

import dataclasses
import io
import json
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

from drawai import data, gan, model_folder
from drawai.categories import UnknownCategoryError
from drawai.gan.io import load_keras
from drawai.gan.refiner import StrokeRefiner
from drawai.gan.training import checkpoints, record_differences, resume_point
from drawai.paths import ROOT, SCRIPTS

CATS = ["apple", "cloud", "door"]


def tiny_config(recipe="conditional", **overrides):
    return gan.GANConfig(**{"recipe": recipe, "categories": CATS, "epochs": 2, "batch_size": 8, "lr": 1e-3,
                            "noise_dim": 8, "width": 8, "seed": 3, **overrides})


@pytest.fixture(scope="module")
def drawings():
    """8 real drawings of each of CATS (24 in all)."""
    sample = data.load_sample(CATS)
    keep = np.concatenate([np.flatnonzero(sample.labels == c)[:8] for c in range(len(CATS))])
    return sample.subset(keep)


@pytest.fixture(scope="module", params=gan.RECIPES)
def trained(request, drawings, tmp_path_factory):
    """(model, config, run_dir) after one epoch of training, for each recipe."""
    config = tiny_config(request.param, epochs=1)
    run_dir = tmp_path_factory.mktemp(f"run-{request.param}")
    return gan.train(drawings, config, run_dir=run_dir, verbose=0), config, run_dir


def weights(variables):
    return [v.numpy() for v in variables]


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def as_saved(values):
    """Weights as a model folder keeps them: float32 rounded to float16 (`gan.io`)."""
    return [v.astype(np.float16).astype(v.dtype) if v.dtype == np.float32 else v for v in values]


# --- config and data ---------------------------------------------------------------------------


def test_presets_are_valid_configs_for_both_recipes():
    for preset in gan.PRESETS:
        for recipe in gan.RECIPES:
            config = gan.GANConfig.from_preset(preset, recipe=recipe)
            assert (config.recipe, config.preset) == (recipe, preset)
            # the preset tunes the conditional recipe's optimiser; the per-label baseline keeps its own
            optimiser = {**gan.RECIPE_DEFAULTS[recipe], **(gan.PRESETS[preset] if recipe == "conditional" else {})}
            assert (config.batch_size, config.lr) == (optimiser["batch_size"], optimiser["lr"])
            # both recipes draw with the same truncation: compared as generate() draws by default
            assert config.truncation == {**gan.RECIPE_DEFAULTS["conditional"], **gan.PRESETS[preset]}["truncation"]
            assert (config.diff_augment, config.aux_weight > 0) == ((recipe == "conditional",) * 2)
    assert gan.GANConfig.from_preset("full").categories == "all"
    assert gan.GANConfig.from_preset("full").lr != gan.GANConfig.from_preset("full", "per_label").lr
    assert gan.GANConfig.from_preset("demo", epochs=3).epochs == 3


@pytest.mark.parametrize("bad", [dict(recipe="vae"), dict(epochs=0), dict(epochs=2.5), dict(batch_size=1),
                                 dict(width=10), dict(lr=0), dict(beta_1=1.0), dict(seed=-1), dict(noise_dim=True),
                                 dict(aux_weight=-1), dict(aux_weight=True),
                                 dict(aux_weight_start=-1, aux_weight=1), dict(aux_weight_start=True, aux_weight=1),
                                 dict(aux_weight_start=0.5), dict(diff_augment="yes"), dict(reconstruction=-1),
                                 dict(reconstruction=True), dict(kl_weight=-1), dict(kl_weight=True),
                                 dict(noise="uniform"),
                                 dict(aux_on_redraws=True), dict(aux_on_redraws=1),
                                 dict(ema=1.0), dict(ema=-0.1), dict(ema=True),
                                 dict(refiner_epochs=-1), dict(refiner_epochs=1.5), dict(refine_start=1.0),
                                 dict(refine_start=0.05), dict(refine_start=True), dict(refiner_width=12),
                                 dict(refiner_width=0)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(gan.GANInputError, match=next(iter(bad))):
        tiny_config(**bad)


def test_aux_weight_is_for_the_conditional_recipe():
    with pytest.raises(gan.GANInputError, match="aux_weight is for the conditional recipe"):
        tiny_config("per_label", aux_weight=1.0)
    with pytest.raises(gan.GANInputError, match="aux_weight is for the conditional recipe"):
        tiny_config("per_label", aux_weight_start=1.0)
    with pytest.raises(gan.GANInputError, match="diff_augment is for the conditional recipe"):
        tiny_config("per_label", diff_augment=True)
    with pytest.raises(gan.GANInputError, match="reconstruction is for the conditional recipe"):
        tiny_config("per_label", reconstruction=10.0)
    with pytest.raises(gan.GANInputError, match="ema is for the conditional recipe"):
        tiny_config("per_label", ema=0.9)
    with pytest.raises(gan.GANInputError, match="refiner_epochs is for the conditional recipe"):
        tiny_config("per_label", refiner_epochs=1)


def test_diff_augment_moves_and_blanks_drawings_by_seed():
    """DiffAugment: a shift of up to 3 px and a blanked square, background -1 coming in; the same draws for the
    same seed, each row's draws the same whether it is augmented in the whole batch or in a replica's slice;
    differentiable."""
    import tensorflow as tf

    dots = -np.ones((64, 28, 28, 1), np.float32)
    dots[:, 14, 14] = 1.0  # one ink pixel in the middle of each
    seed = tf.constant([1, 2], tf.int64)
    moved = gan.diff_augment(tf.constant(dots), seed, cut=0).numpy()
    ink = np.argwhere(moved[..., 0] > 0)
    assert len(ink) == 64 and np.abs(ink[:, 1:] - 14).max() == 3  # every dot still there, moved by up to 3 px
    assert len({tuple(p) for p in ink[:, 1:]}) > 20  # each image its own shift
    assert set(np.unique(moved)) == {-1.0, 1.0}
    cut = gan.diff_augment(tf.constant(dots), seed).numpy()
    assert 0 < (cut[..., 0] > 0).sum() < 64  # some dots fall in the blanked square
    assert np.array_equal(cut, gan.diff_augment(tf.constant(dots), seed).numpy())
    assert not np.array_equal(cut, gan.diff_augment(tf.constant(dots), tf.constant([1, 3], tf.int64)).numpy())
    part = gan.diff_augment(tf.constant(dots[16:32]), seed, first=16, total=64).numpy()
    assert np.array_equal(part, cut[16:32])
    assert np.array_equal(gan.diff_augment(tf.constant(-np.ones_like(dots)), seed).numpy(), -np.ones_like(dots))
    x = tf.Variable(dots)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(gan.diff_augment(x, seed, cut=0))
    grad = tape.gradient(total, x).numpy()
    assert np.array_equal(grad[:, 14, 14, 0], np.ones(64))  # each dot copied once into its moved image


def test_aux_weight_grows_from_its_start_over_the_run():
    model = gan.build(tiny_config(aux_weight=3.0, aux_weight_start=0.5))
    assert float(model.aux_weight_now()) == 3.0  # outside `train` (no run length): the weight itself
    model.ramp_steps = 10
    for step, weight in ((0, 0.5), (4, 1.5), (10, 3.0), (25, 3.0)):
        model.step_counter.assign(step)
        assert float(model.aux_weight_now()) == pytest.approx(weight)
    assert gan.build(tiny_config(aux_weight=3.0)).aux_weight_now() == 3.0


def test_a_run_recorded_before_a_config_field_existed_had_its_default():
    record = {"kind": "drawai.gan.run", "config": tiny_config().to_dict()}
    old = {**record, "config": {k: v for k, v in record["config"].items() if k != "aux_weight_start"}}
    assert record_differences(old, record) == []
    ramped = {**record, "config": {**record["config"], "aux_weight": 1.0, "aux_weight_start": 0.0}}
    assert record_differences(old, ramped) == ["config.aux_weight", "config.aux_weight_start"]


def test_unknown_category_or_preset_in_config():
    with pytest.raises(UnknownCategoryError, match="did you mean 'apple'"):
        tiny_config(categories=["aple"])
    with pytest.raises(gan.GANInputError, match="unknown preset"):
        gan.GANConfig.from_preset("huge")


def test_training_data_must_match_config_categories(drawings):
    with pytest.raises(gan.GANInputError, match="categories"):
        gan.train(drawings, tiny_config(categories=["apple", "cloud"]))
    with pytest.raises(gan.GANInputError, match="run_dir"):
        gan.train(drawings, tiny_config(), resume=True)


def test_training_arrays_are_canonical_in_minus_one_to_one(drawings):
    images, labels = gan.training_arrays(drawings)
    assert images.shape == (24, 28, 28, 1) and images.dtype == np.float32 and labels.dtype == np.int32
    assert images.min() == -1 and 0.9 < images.max() <= 1


def test_training_arrays_leave_out_unreadable_drawings(drawings):
    images = drawings.images.copy()
    images[4] = 255  # all ink: not a line drawing
    images[9] = 0  # no ink at all
    broken = data.Drawings(images, drawings.labels, drawings.categories, drawings.source)
    with pytest.warns(UserWarning, match="left out 2 of 24 .* in: apple, cloud"):
        x, labels = gan.training_arrays(broken)
    assert len(x) == 22 and np.array_equal(labels, np.delete(drawings.labels, [4, 9]))
    empty = data.Drawings(np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64), ("apple",), "test")
    with pytest.raises(gan.GANInputError, match="none of the 2"):
        gan.training_arrays(empty)


def test_epoch_batches_mixed_labels():
    labels = np.repeat(np.arange(3), 10)
    first = gan.epoch_batches(labels, epoch=0, batch_size=8, seed=1, one_label=False)
    assert [len(b) for b in first] == [8, 8, 8]  # full batches only; the 6 left over wait for another shuffle
    assert len(np.unique(np.concatenate(first))) == 24
    again = gan.epoch_batches(labels, epoch=0, batch_size=8, seed=1, one_label=False)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = gan.epoch_batches(labels, epoch=1, batch_size=8, seed=1, one_label=False)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_epoch_batches_one_label_per_batch():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 8)
    batches = gan.epoch_batches(labels, epoch=2, batch_size=4, seed=0, one_label=True)
    assert all(len(np.unique(labels[b])) == 1 and len(b) <= 4 for b in batches)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(labels)))  # every drawing once
    assert len(batches) == 3 + 1 + 2


# --- networks and the training step ------------------------------------------------------------


@pytest.mark.parametrize("recipe", gan.RECIPES)
def test_shapes(recipe):
    model = gan.build(tiny_config(recipe))
    noise, labels = np.zeros((5, 8), np.float32), np.array([0, 1, 2, 0, 1], np.int32)
    fake = model((noise, labels))
    assert tuple(fake.shape) == (5, 28, 28, 1)
    scores = model.discriminator((fake, labels) if recipe == "conditional" else fake)  # a per-label D reads no label
    assert tuple(scores.shape) == (5,)
    one = model.generate("cloud", n=4, seed=0)
    assert one.shape == (4, 28, 28) and one.dtype == np.float32
    # the generator's [-1, 1] (ink at 1, as in `training_arrays`) moved onto [0, 1]; generate left cloud's weights
    # in a per-label model's slot
    z = gan.noise_batch(4, 8, seed=0, truncation=model.truncation)
    drawn = (keras.ops.convert_to_numpy(model((z, np.full(4, 1, np.int32))))[..., 0] + 1) / 2
    assert np.allclose(one, drawn, atol=1e-6)
    assert model.generate(["apple", 2], n=3, seed=0).shape == (6, 28, 28)


@pytest.mark.parametrize("recipe", gan.RECIPES)
def test_one_train_step_changes_generator_and_discriminator(recipe, drawings):
    model = gan.build(tiny_config(recipe))
    images, labels = gan.training_arrays(drawings)
    batch = labels == 1 if recipe == "per_label" else slice(0, 24, 3)  # per_label batches hold one label
    slot = model.generator.trainable_variables, model.discriminator.trainable_variables
    before = [weights(v) for v in slot]
    bank_before = weights(getattr(model, "bank", []))
    logs = model.train_step((images[batch], labels[batch]))
    assert np.isfinite(float(logs["g_loss"])) and np.isfinite(float(logs["d_loss"]))
    if recipe == "conditional":
        assert changed(before[0], weights(slot[0])) and changed(before[1], weights(slot[1]))
    else:
        # Label 1's generator and discriminator (kept in the bank) changed; the other labels' did not.
        n_g, n_d = len(model.generator.variables), len(model.discriminator.variables)
        after = weights(model.bank)
        for k in range(3):
            label_k = [(before_k[k], after_k[k]) for before_k, after_k in zip(bank_before, after, strict=True)]
            gen, disc = label_k[:n_g], label_k[n_g:n_g + n_d]
            assert changed(*zip(*gen, strict=True)) == (k == 1) and changed(*zip(*disc, strict=True)) == (k == 1)
    assert int(model.step_counter.numpy()) == 1


def test_auxiliary_classifier_head_is_trained_and_saved(drawings, tmp_path, drawn_alike):
    """AC-GAN's auxiliary loss: the discriminator's category head learns from real drawings, and it survives
    save/load; without aux_weight there is no head at all."""
    assert gan.build(tiny_config()).discriminator.classify is None
    config = tiny_config(aux_weight=1.0)
    model = gan.build(config)
    images, labels = gan.training_arrays(drawings)
    logit, classes = model.discriminator.scores(images[:5], labels[:5])
    assert tuple(logit.shape) == (5,) and tuple(classes.shape) == (5, len(CATS))
    head = weights(model.discriminator.classify.trainable_variables)
    plain = gan.build(tiny_config())  # same seed, no auxiliary loss
    model.train_step((images[::2], labels[::2]))
    plain.train_step((images[::2], labels[::2]))
    assert changed(head, weights(model.discriminator.classify.trainable_variables))
    # The auxiliary loss changes what the generator learns from the same batch and noise.
    assert changed(weights(plain.generator.trainable_variables), weights(model.generator.trainable_variables))
    folder = gan.save(model, tmp_path / "ac", config, data_checksum=drawings.checksum, command="pytest")
    loaded = gan.load(folder)
    assert loaded.aux_weight == 1.0 and loaded.discriminator.classify is not None
    head = model.discriminator.classify.variables, loaded.discriminator.classify.variables
    assert not changed(as_saved(weights(head[0])), weights(head[1]))
    drawn_alike(model, loaded, CATS, 2, seed=1)


def test_the_encoder_learns_to_read_the_noise_of_real_drawings(drawings, tmp_path, drawn_alike):
    """cVAE-GAN: with `reconstruction`, an encoder trains beside the generator, and half the generated batch redraws
    half the real one from the noise it reads; it is saved and loaded with the model (generate does not use it)."""
    assert gan.build(tiny_config()).encoder is None
    model = gan.build(tiny_config(reconstruction=10.0))
    plain = gan.build(tiny_config())  # same seed: the same generator and discriminator to start with
    images, labels = gan.training_arrays(drawings)
    mean, log_var = model.encoder((images[:4], labels[:4]))
    assert tuple(mean.shape) == tuple(log_var.shape) == (4, 8)
    encoder = weights(model.encoder.trainable_variables)
    model.train_step((images[::2], labels[::2]))
    plain.train_step((images[::2], labels[::2]))
    assert changed(encoder, weights(model.encoder.trainable_variables))
    assert changed(weights(plain.generator.trainable_variables), weights(model.generator.trainable_variables))
    gan.save(model, tmp_path / "model")
    loaded = gan.load(tmp_path / "model")
    assert loaded.reconstruction == 10.0 and not changed(as_saved(weights(model.encoder.variables)),
                                                          weights(loaded.encoder.variables))
    drawn_alike(model, loaded, CATS, 2, seed=0)


def test_the_auxiliary_loss_on_redraws_teaches_the_generator_and_encoder_not_the_discriminator(drawings):
    """With `aux_on_redraws`, the AC head's reading of the redrawn drawings joins the generator's loss: the generator
    and the encoder move, and the discriminator learns exactly what it would without (only real drawings teach it)."""
    images, labels = gan.training_arrays(drawings)
    model = gan.build(tiny_config(aux_weight=1.0, reconstruction=10.0, aux_on_redraws=True))
    plain = gan.build(tiny_config(aux_weight=1.0, reconstruction=10.0))
    model.train_step((images[::2], labels[::2]))
    plain.train_step((images[::2], labels[::2]))
    for network in ("generator", "encoder"):
        assert changed(weights(getattr(plain, network).trainable_variables),
                       weights(getattr(model, network).trainable_variables))
    discriminators = (weights(m.discriminator.trainable_variables) for m in (plain, model))
    assert not changed(*discriminators)
    with pytest.raises(gan.GANInputError, match="aux_on_redraws needs the encoder and the AC head"):
        tiny_config(aux_on_redraws=True, reconstruction=10.0)


def test_fitted_noise_draws_around_each_labels_readings_with_the_labels_own_normal_as_kernel():
    """FittedNoise on readings drawn from two known normals: each label's mean and covariance come back as its
    kernel, its main direction included; a draw is a reading (the one its uniform draw picks) plus a draw from
    that kernel, so draws for a label spread like the readings plus the kernel (twice the readings' covariance)."""
    rng = np.random.default_rng(0)
    dim, n = 6, 4000
    means = np.array([[2.0] * dim, [-1.0] * dim])
    along = np.zeros(dim)
    along[0] = 3.0  # label 1 varies mostly along the first axis
    codes = np.concatenate([means[0] + 0.5 * rng.standard_normal((n, dim)),
                            means[1] + 0.5 * rng.standard_normal((n, dim)) + rng.standard_normal((n, 1)) * along])
    labels = np.repeat([0, 1], n)
    fitted = gan.FittedNoise(2, dim, rank=2, centres=n)
    fitted.fit(codes, labels, shrink=0.0)
    assert np.allclose(fitted.mean.numpy(), means, atol=0.15)
    assert list(fitted.counts.numpy()) == [n, n]
    at_centres = fitted.draw(np.zeros((2, 2 + dim)), np.array([0, 1]), np.array([0.0, (7 + 0.5) / n]))
    assert np.allclose(at_centres, [codes[0], codes[n + 7]], atol=1e-5)
    drawn = fitted.draw(rng.standard_normal((2 * n, 2 + dim)), labels, rng.random(2 * n))
    for c in (0, 1):
        assert np.allclose(drawn[labels == c].mean(0), means[c], atol=0.2)
        assert np.allclose(np.cov(drawn[labels == c].T), 2 * np.cov(codes[labels == c].T), atol=0.6)
    assert np.cov(drawn[labels == 1].T)[0, 0] > 16 > 1 > np.cov(drawn[labels == 0].T)[0, 0]


def test_fitted_noise_keeps_a_seeded_choice_of_centres_and_loads_models_saved_before_them():
    """More readings than `centres`: a seeded choice of them is kept. A model saved before the centres (four
    variables) draws around each label's mean, as it did; one saved before the fitted noise stays unfitted."""
    rng = np.random.default_rng(1)
    codes, labels = rng.standard_normal((30, 4)), np.repeat([0, 1], 15)
    kept = []
    for _ in range(2):
        fitted = gan.FittedNoise(2, 4, rank=1, centres=5)
        fitted.fit(codes, labels, seed=3)
        kept.append(fitted.readings.numpy())
    assert list(fitted.counts.numpy()) == [5, 5] and np.array_equal(kept[0], kept[1])
    for c in (0, 1):  # each centre is one of its own label's readings, none twice
        nearest = np.abs(kept[0][c][:, None] - codes[labels == c][None]).max(-1).argmin(1)
        assert np.allclose(kept[0][c], codes[labels == c][nearest], atol=1e-6) and len(set(nearest)) == 5
    old = gan.FittedNoise(2, 4, rank=1)
    old.load_own_variables({str(i): v.numpy() for i, v in enumerate(
        (fitted.mean, fitted.directions, fitted.rest, fitted.fitted))})
    assert float(old.fitted.numpy()) == 1 and old.counts.numpy().sum() == 0
    unit = rng.standard_normal((2, 5))
    expected = fitted.mean.numpy() + np.einsum("ndr,nr->nd", fitted.directions.numpy(), unit[:, :1]) \
        + fitted.rest.numpy()[:, None] * unit[:, 1:]
    assert np.allclose(old.draw(unit, np.array([0, 1]), np.array([0.3, 0.9])), expected, atol=1e-5)
    fresh = gan.FittedNoise(2, 4, rank=1)
    fresh.load_own_variables({})  # as for a model saved before the fitted noise: left unfitted, not an error
    assert float(fresh.fitted.numpy()) == 0
    with pytest.raises(gan.GANInputError, match="centres"):
        gan.FittedNoise(2, 4, rank=1, centres=0)


def test_the_ink_curve_maps_pixel_values_onto_the_real_distribution_and_moves_no_stroke():
    """InkCurve.fit on a known pair: dim, soft pixel values come out with the real ones' quantiles, in the same
    order (a monotone map: the brightest pixel stays the brightest); unfitted, and as loaded from a model saved
    before it, it is the identity."""
    rng = np.random.default_rng(0)
    real = np.where(rng.random(20_000) < 0.2, 1.0, 0.0)  # full ink or none, as the canonical form's core
    generated = np.where(rng.random(20_000) < 0.25, rng.uniform(0.3, 0.9, 20_000), rng.uniform(0, 0.05, 20_000))
    curve = gan.InkCurve()
    assert np.array_equal(curve.apply(generated.astype(np.float32)), generated.astype(np.float32))
    curve.fit(generated, real)
    mapped = curve.apply(generated.astype(np.float32))
    assert abs((mapped > 0.5).mean() - 0.2) < 0.01 and (mapped[generated < 0.05] < 0.01).all()
    order = np.argsort(generated)
    assert (np.diff(mapped[order]) >= 0).all()
    fresh = gan.InkCurve()
    fresh.load_own_variables({})
    assert float(fresh.fitted.numpy()) == 0


def test_training_fits_the_ink_curve_last_and_generate_applies_it(trained, drawings):
    """After training, generate's pixel values follow the training drawings' (the curve fitted on the model's own
    drawings); the raw output, with the curve switched off, does not."""
    model = trained[0]
    images, _ = gan.training_arrays(drawings)
    real = (images + 1) / 2
    assert float(model.ink_curve.fitted.numpy()) == 1
    drawn = model.generate(list(CATS), gan.InkCurve.PER_LABEL, seed=model.seed)
    model.ink_curve.fitted.assign(0.0)
    try:
        raw = model.generate(list(CATS), gan.InkCurve.PER_LABEL, seed=model.seed)
    finally:
        model.ink_curve.fitted.assign(1.0)
    q = np.linspace(0, 1, gan.InkCurve.LEVELS)[[128, 204, 230, 243]]  # ~0.5, 0.8, 0.9, 0.95: where it is exact
    assert np.abs(np.quantile(drawn, q) - np.quantile(real, q)).max() < 1e-3
    assert np.abs(np.quantile(raw, q) - np.quantile(real, q)).max() > 0.05  # the curve had something to do


@pytest.mark.slow
def test_training_with_the_encoder_fits_each_labels_noise_and_generate_can_draw_from_it(drawings, tmp_path,
                                                                                         drawn_alike):
    """At the end of training, a model with an encoder fits each label's noise to the encoder's readings of its
    training drawings; generate(noise="fitted") draws from it, saved and loaded with the model. With
    `noise="fitted"` in the config it is generate()'s default; the per-epoch sample grids, drawn before it exists,
    use N(0, 1)."""
    model = gan.train(drawings, tiny_config(epochs=1, reconstruction=10.0, noise="fitted"), run_dir=tmp_path / "run",
                      verbose=0)
    assert (tmp_path / "run" / "samples" / "epoch-0001.png").exists()
    images, labels = gan.training_arrays(drawings)
    codes = model.encoder((images, labels))[0].numpy()
    assert float(model.fitted_noise.fitted.numpy()) == 1
    assert np.allclose(model.fitted_noise.mean.numpy(), [codes[labels == c].mean(0) for c in range(3)], atol=1e-5)
    counts = np.bincount(labels)
    assert np.array_equal(model.fitted_noise.counts.numpy(), counts)  # the kernel centres: every reading
    assert np.allclose(model.fitted_noise.readings.numpy()[0, :counts[0]], codes[labels == 0], atol=1e-5)
    fitted = model.generate(CATS, 4, seed=0, noise="fitted")
    assert fitted.shape == (12, 28, 28) and not np.array_equal(fitted, model.generate(CATS, 4, seed=0, noise="normal"))
    assert np.array_equal(fitted, model.generate(CATS, 4, seed=0))
    gan.save(model, tmp_path / "model")
    loaded = gan.load(tmp_path / "model")
    assert np.array_equal(drawn_alike(model, loaded, CATS, 4, seed=0, noise="fitted"), fitted)
    with pytest.raises(gan.GANInputError, match="noise must be one of"):
        model.generate(CATS, 1, noise="uniform")
    plain = gan.build(tiny_config())
    with pytest.raises(gan.GANInputError, match="needs a generator trained with the encoder"):
        plain.generate(CATS, 1, noise="fitted")
    with pytest.raises(gan.GANInputError, match="noise='fitted' needs the encoder"):
        tiny_config(noise="fitted")


@pytest.mark.slow
def test_the_generator_draws_with_the_moving_average_of_its_weights(drawings, tmp_path):
    """With `ema`, training ends with the generator's weights replaced by their moving average over the steps (the
    checkpoints keep the trained weights and the average, so a resumed or finished run ends the same way)."""
    config = tiny_config(epochs=2, ema=0.5)
    model = gan.train(drawings, config, run_dir=tmp_path / "run", verbose=0)
    _, trained, _ = resume_point(tmp_path / "run", json.loads((tmp_path / "run" / "run.json").read_text()))
    average = trained.g_optimizer._model_variables_moving_average
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(average, model.generator.trainable_variables, strict=True))
    assert changed(weights(trained.generator.trainable_variables), weights(model.generator.trainable_variables))
    finished = gan.train(drawings, config, run_dir=tmp_path / "run", resume=True, verbose=0)
    assert np.array_equal(finished.generate(CATS, 2, seed=0), model.generate(CATS, 2, seed=0))
    plain = gan.train(drawings, tiny_config(epochs=2), verbose=0)  # the same run without the average
    trained.fit_ink(gan.training_arrays(drawings)[0])  # as training does after its last checkpoint
    assert np.array_equal(plain.generate(CATS, 2, seed=0), trained.generate(CATS, 2, seed=0))


def test_truncated_noise_stays_inside_the_cut():
    full = gan.noise_batch(4000, 16, seed=0)
    cut = gan.noise_batch(4000, 16, seed=0, truncation=0.5)
    assert np.abs(full).max() > 3 and np.abs(cut).max() <= 0.5
    assert abs(cut.mean()) < 0.01 and 0.25 < cut.std() < 0.3  # a normal cut at +-0.5 has std 0.27
    assert np.array_equal(cut, gan.noise_batch(4000, 16, seed=0, truncation=0.5))


def test_per_label_generators_start_different():
    model = gan.build(tiny_config("per_label"))
    kernel = model.bank[0].numpy()  # the first Dense kernel of each label's generator
    assert kernel.shape[0] == 3 and not np.array_equal(kernel[0], kernel[1])
    assert np.allclose(np.sort(kernel[0].ravel()), np.sort(kernel[1].ravel()))  # same initialiser


# --- generate ----------------------------------------------------------------------------------


def test_generate_is_deterministic_and_label_conditional(trained):
    model, _, _ = trained
    a = model.generate(["apple", "door"], n=4, seed=7)
    assert np.array_equal(a, model.generate(["apple", "door"], n=4, seed=7))
    assert not np.array_equal(a, model.generate(["apple", "door"], n=4, seed=8))
    # Same seed, so the same noise: the label alone changes the drawing.
    assert np.abs(model.generate("apple", 4, seed=7) - model.generate("door", 4, seed=7)).mean() > 1e-3
    assert np.array_equal(a[:4], model.generate("apple", 4, seed=7))
    assert np.array_equal(model.generate(2, 2, seed=1), model.generate("door", 2, seed=1))


@pytest.mark.parametrize("labels, n, seed, match", [
    ("aple", 1, 0, "did you mean 'apple'"),
    ("cat", 1, 0, "not one of them"),
    (3, 1, 0, "out of range"),
    (-1, 1, 0, "out of range"),
    ([], 1, 0, "non-empty"),
    ([0, 1.5], 1, 0, "name or an index"),
    ([True], 1, 0, "name or an index"),
    ("apple", 0, 0, "positive"),
    ("apple", 2.0, 0, "positive"),
    (["apple", "door"], gan.MAX_GENERATE, 0, "at most"),
    ("apple", 1, -3, "seed"),
])
def test_generate_bad_input_is_a_clear_error(trained, labels, n, seed, match):
    with pytest.raises(ValueError, match=match):
        trained[0].generate(labels, n, seed)


@pytest.mark.parametrize("truncation", [0, -1, 0.01, 11, "0.5", True])
def test_generate_bad_truncation_is_a_clear_error(trained, truncation):
    with pytest.raises(gan.GANInputError, match="truncation must be"):
        trained[0].generate("apple", 2, seed=0, truncation=truncation)


@pytest.mark.parametrize("refine", ["yes", 1, None])
def test_generate_bad_refine_is_a_clear_error(trained, refine):
    with pytest.raises(gan.GANInputError, match="refine must be True or False"):
        trained[0].generate("apple", 2, seed=0, refine=refine)


def test_truncation_gives_the_same_drawings_for_the_same_seed(trained):
    model = trained[0]
    a = model.generate(CATS, 3, seed=4, truncation=0.5)
    assert np.array_equal(a, model.generate(CATS, 3, seed=4, truncation=0.5))
    assert not np.array_equal(a, model.generate(CATS, 3, seed=4))


# --- save / load -------------------------------------------------------------------------------


def test_save_load_round_trip(trained, tmp_path, drawings, drawn_alike):
    model, config, _ = trained
    folder = gan.save(model, tmp_path / "gan", config, data_checksum=drawings.checksum, command="pytest")
    loaded = gan.load(folder)
    assert type(loaded) is type(model) and loaded.categories == model.categories
    drawn_alike(model, loaded, CATS, 3, seed=5)
    assert not changed(as_saved(weights(model.generator.variables)), weights(loaded.generator.variables))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["categories"] == CATS and manifest["recipe"] == config.recipe
    assert manifest["config"] == config.to_dict() and manifest["data"]["checksum"] == drawings.checksum
    assert manifest["metrics"]["epochs"] == 1 and manifest["metrics"]["last_epoch"]["images_per_s"] > 0
    assert manifest["command"] == "pytest"
    # Shipped compact: the optimisers' state is zeroed in the file (and only there), the archive deflated.
    slots = lambda m: [v.numpy() for o in (m.g_optimizer, m.d_optimizer) for v in o.variables]  # noqa: E731
    assert not any(np.any(v) for v in slots(loaded)) and any(np.any(v) for v in slots(model))
    with zipfile.ZipFile(folder / "model.keras") as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
        stored_weights = z.read("model.weights.h5")
    # ... and every weight in float16 (the model in memory keeps its float32).
    with h5py.File(io.BytesIO(stored_weights)) as h5:
        stored = []
        h5.visititems(lambda name, item: stored.append(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert np.dtype("float16") in stored and np.dtype("float32") not in stored
    # Saving again over a draw-ai GAN folder is allowed; config and data default to what train() recorded.
    gan.save(model, folder)
    again = gan.load(folder)
    assert again.manifest["config"] == config.to_dict() and again.manifest["data"]["checksum"] == drawings.checksum
    assert again.manifest["data"]["train_drawings"] == len(drawings)
    assert sorted(os.listdir(folder)) == ["manifest.json", "model.keras"]  # no temp files left


def test_save_refuses_a_foreign_folder(trained, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(gan.ModelFileError, match="nothing was overwritten"):
        gan.save(trained[0], tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def fake_gan_folder(folder, write_model):
    """A folder whose manifest claims a draw-ai GAN, around a model.keras written by `write_model`."""
    folder.mkdir()
    write_model(folder / "model.keras")
    model_folder.write(folder, model_folder.make_manifest("generator", CATS, folder / "model.keras", {}, {}, {},
                                                         "pytest", recipe="conditional"))
    return folder


def test_safe_mode_refuses_a_lambda(tmp_path):
    doubling = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    folder = fake_gan_folder(tmp_path / "lambda", doubling.save)
    with pytest.raises(gan.ModelFileError, match="safe_mode"):
        gan.load(folder)


def test_load_refuses_foreign_corrupt_and_mismatched_files(trained, tmp_path):
    dense = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(gan.ModelFileError, match="holds a Sequential"):
        gan.load(fake_gan_folder(tmp_path / "foreign", dense.save))
    with pytest.raises(gan.ModelFileError, match="not a .keras archive"):
        gan.load(fake_gan_folder(tmp_path / "junk", lambda p: p.write_bytes(b"not a zip" * 100)))
    with pytest.raises(gan.ModelFileError, match="manifest"):
        gan.load(tmp_path)  # no manifest at all
    folder = gan.save(trained[0], tmp_path / "good", trained[1])
    data_before = (folder / "model.keras").read_bytes()
    with zipfile.ZipFile(folder / "model.keras", "a") as z:
        z.writestr("extra.txt", "edited")
    with pytest.raises(gan.ModelFileError, match="SHA-256"):
        gan.load(folder)
    (folder / "model.keras").write_bytes(data_before[: len(data_before) // 2])
    with pytest.raises(gan.ModelFileError, match="SHA-256"):
        gan.load(folder)
    # Weights that truly belong to another model (other categories), with a manifest that agrees
    # on the hash but not on the categories.
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "model.keras").write_bytes(data_before)
    manifest["categories"] = ["apple", "cloud", "house"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gan.ModelFileError, match="does not match its manifest"):
        gan.load(folder)


# --- checkpoints and resume --------------------------------------------------------------------


class KillAt(keras.callbacks.Callback):
    """Stands in for a kill: dies inside epoch `epoch` (1-based), before it is checkpointed."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt("killed")


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(drawings, tmp_path):
    # Every step weighs the auxiliary loss anew, augments what the discriminator sees and samples the encoder's noise:
    # all from the step counter.
    config = tiny_config(epochs=2, aux_weight=1.0, aux_weight_start=0.0, diff_augment=True, reconstruction=10.0,
                         ema=0.9)
    straight = gan.train(drawings, config, verbose=0)
    assert [h["epoch"] for h in straight.train_history] == [1, 2]  # logged even without a run_dir
    assert all(h["images_per_s"] > 0 and h["cpu_seconds"] > 0 for h in straight.train_history)

    run_dir = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        gan.train(drawings, config, run_dir=run_dir, verbose=0, callbacks=[KillAt(2)])
    assert [p.name for _, p in checkpoints(run_dir)] == ["epoch-0001.keras"]
    assert not [p for p in (run_dir / "checkpoints").iterdir() if ".tmp" in p.name]
    with pytest.raises(gan.ModelFileError, match="resume=True"):
        gan.train(drawings, config, run_dir=run_dir, verbose=0)  # would overwrite: refused

    resumed = gan.train(drawings, config, run_dir=run_dir, resume=True, verbose=0)
    assert [h["epoch"] for h in resumed.train_history] == [1, 2]
    assert int(resumed.step_counter.numpy()) == int(straight.step_counter.numpy()) == 2 * 3
    # Same batches, same noise, restored optimiser state: the resumed run ends where the straight one does.
    for a, b in zip(straight.generator.variables, resumed.generator.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    assert (run_dir / "samples" / "epoch-0002.png").exists()

    done = gan.train(drawings, config, run_dir=run_dir, resume=True, verbose=0)  # finished: nothing to do
    assert [h["epoch"] for h in done.train_history] == [1, 2]
    with pytest.raises(gan.ModelFileError, match="different run"):
        gan.train(drawings, tiny_config(epochs=2, lr=2e-3), run_dir=run_dir, resume=True, verbose=0)
    # truncation only changes generate(): the same run, drawing with the new setting
    other = gan.train(drawings, dataclasses.replace(config, truncation=0.5), run_dir=run_dir, resume=True, verbose=0)
    assert other.truncation == 0.5 and np.array_equal(other.generate("apple", 3, seed=1),
                                                      done.generate("apple", 3, seed=1, truncation=0.5))


def test_checkpoint_restores_the_model(trained, drawings):
    model, config, run_dir = trained
    epoch, restored, history = resume_point(run_dir, json.loads((run_dir / "run.json").read_text()))
    assert epoch == 1 and [h["epoch"] for h in history] == [1]
    restored.fit_ink(gan.training_arrays(drawings)[0])  # what training does after its last checkpoint
    assert np.array_equal(restored.generate(CATS, 2, seed=0), model.generate(CATS, 2, seed=0))
    if config.recipe == "per_label":
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.bank, restored.bank, strict=True))


@pytest.mark.slow
def test_the_readme_grid_shows_real_drawings_beside_the_models_own(drawings, tmp_path):
    """scripts/generator_grid.py: one row per category, the real test drawings on the left and what the model draws
    at its default noise on the right; docs/generated.png is that picture of the shipped generator."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("generator_grid", SCRIPTS / "generator_grid.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = gan.train(drawings, tiny_config(epochs=1), verbose=0)
    gan.save(model, tmp_path / "model")
    assert script.main(["--model", str(tmp_path / "model"), "--out", str(tmp_path / "grid.png")]) == 0
    picture = np.asarray(Image.open(tmp_path / "grid.png"))
    assert picture.ndim == 2 and picture.shape[0] < picture.shape[1] / 4  # 3 rows of 17 drawings and a gap
    shipped = Image.open(ROOT / "docs" / "generated.png")
    assert shipped.height > shipped.width * 0.8  # 16 rows of the 345 categories
    assert "docs/generated.png" in (ROOT / "README.md").read_text()


# --- the stroke refiner (drawai/gan/refiner.py) -------------------------------------------------------------------

def tiny_refiner(seed=0, start=0.5, steps=4):
    refiner = StrokeRefiner(len(CATS), widths=(8, 16, 16), start=start, steps=steps, seed=seed)
    refiner.compile(optimizer=keras.optimizers.Adam(2e-3))
    return refiner


def fit_refiner(refiner, drawings, epochs):
    import tensorflow as tf

    images, labels = gan.training_arrays(drawings)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    return refiner.fit(batches, epochs=epochs, verbose=0).history["flow_loss"]


def test_refine_carries_a_drawing_to_where_the_flow_points(drawings):
    """With the exact velocity of a flow into one drawing D, (D - x) / (1 - t), refine() ends on D from any noise:
    the noising to `start` and the midpoint steps to time 1 are the flow's own arithmetic."""
    refiner = tiny_refiner(start=0.3, steps=3)
    images, labels = gan.training_arrays(drawings)
    target = images[:4]
    refiner._velocity = lambda x, t, y: (target - x) / (1 - t)
    out = refiner.refine(np.zeros((4, 28, 28), np.float32), labels[:4], seed=5)
    assert out.shape == (4, 28, 28) and out.dtype == np.float32
    assert np.abs(out - (target[..., 0] + 1) / 2).max() < 1e-5


@pytest.fixture(scope="module")
def refiner_and_losses(drawings):
    keras.utils.set_random_seed(0)  # the initial weights, made at the first step
    refiner = tiny_refiner(seed=1)
    return refiner, fit_refiner(refiner, drawings, 6)


@pytest.mark.slow  # trains refiners
def test_the_refiner_learns_and_its_training_is_a_function_of_its_seed(refiner_and_losses, drawings):
    trained, losses = refiner_and_losses
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses  # it learns the velocity towards real drawings
    again = {}
    for seed in (1, 2):
        keras.utils.set_random_seed(0)
        again[seed] = tiny_refiner(seed=seed)
        fit_refiner(again[seed], drawings, 6)
    def apart(a, b):
        return max(float(np.abs(u - v).max()) for u, v in zip(a.get_weights(), b.get_weights()))

    # oneDNN's threaded sums differ in the last bits from run to run; other draws differ by far more
    same, other = apart(trained, again[1]), apart(trained, again[2])
    assert same < 0.1 * other, f"one seed should draw the same: weights {same} apart, another seed's {other}"


@pytest.mark.slow  # trains refiners
def test_refine_is_seeded_and_survives_a_safe_save_and_load(refiner_and_losses, drawings, tmp_path):
    refiner = refiner_and_losses[0]
    images, labels = gan.training_arrays(drawings)
    drawn = (images[:6, ..., 0] + 1) / 2
    out = refiner.refine(drawn, labels[:6], seed=3)
    assert np.array_equal(out, refiner.refine(drawn, labels[:6], seed=3))
    assert not np.array_equal(out, refiner.refine(drawn, labels[:6], seed=4))
    # a redrawing, not a fresh drawing: each comes out nearer the drawing it started from than any of the others
    apart = np.abs(out[:, None] - drawn[None]).mean(axis=(2, 3))
    assert np.array_equal(apart.argmin(1), np.arange(6)), apart
    refiner.save(tmp_path / "refiner.keras")
    loaded = keras.models.load_model(tmp_path / "refiner.keras", safe_mode=True)
    assert (loaded.start, loaded.steps, loaded.seed) == (0.5, 4, 1)
    assert np.array_equal(out, loaded.refine(drawn, labels[:6], seed=3))


@pytest.mark.parametrize("start", [0, 1, -0.5, 1.5])
def test_a_refiner_start_outside_the_path_is_a_clear_error(start):
    with pytest.raises(gan.GANInputError, match="start must be a time in"):
        tiny_refiner(start=start)


@pytest.mark.slow  # trains a GAN and its refiner, twice
def test_training_ends_with_the_refiner_which_generate_draws_with_and_a_killed_run_resumes(drawings, tmp_path,
                                                                                          drawn_alike):
    config = tiny_config(epochs=1, refiner_epochs=2, refiner_width=8, refine_start=0.5)
    straight = gan.train(drawings, config, verbose=0)
    assert [h["epoch"] for h in straight.refiner_history] == [1, 2]
    assert straight.refiner.start == 0.5  # attached without its optimiser, so without Adam's moments:
    assert getattr(straight.refiner, "optimizer", None) is None
    refined, plain = straight.generate(CATS, 4, seed=2), straight.generate(CATS, 4, seed=2, refine=False)
    assert np.array_equal(refined, straight.generate(CATS, 4, seed=2))  # seeded, the refiner's noise too
    assert not np.array_equal(refined, straight.generate(CATS, 4, seed=3))
    assert np.abs(refined - plain).mean() > 0.01  # redrawn, not passed through
    assert np.array_equal(refined, straight.refiner.refine(plain, np.repeat([0, 1, 2], 4), 2))  # after the ink curve
    # its own ink curve, fitted last on its redrawings: their pixel values follow the training drawings'
    curve, real = straight.refiner.ink_curve, (gan.training_arrays(drawings)[0] + 1) / 2
    assert float(curve.fitted.numpy()) == 1
    redrawn = straight.generate(list(CATS), gan.InkCurve.PER_LABEL_REFINED, seed=straight.seed, truncation=None)
    curve.fitted.assign(0.0)
    try:
        raw = straight.generate(list(CATS), gan.InkCurve.PER_LABEL_REFINED, seed=straight.seed, truncation=None)
    finally:
        curve.fitted.assign(1.0)
    q = np.linspace(0, 1, gan.InkCurve.LEVELS)[[128, 204, 230, 243]]  # ~0.5, 0.8, 0.9, 0.95: where it is exact
    assert np.abs(np.quantile(redrawn, q) - np.quantile(real, q)).max() < 1e-3
    assert np.abs(np.quantile(raw, q) - np.quantile(real, q)).max() > 0.05  # the curve had something to do

    run_dir = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):  # dies in the refiner's second epoch (the GAN has one)
        gan.train(drawings, config, run_dir=run_dir, verbose=0, callbacks=[KillAt(2)])
    assert [p.name for _, p in checkpoints(run_dir, "refiner")] == ["refiner-0001.keras"]
    resumed = gan.train(drawings, config, run_dir=run_dir, resume=True, verbose=0)
    assert [h["epoch"] for h in resumed.refiner_history] == [1, 2]
    for a, b in zip(straight.refiner.get_weights(), resumed.refiner.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # the same draws and order: where it would have been
    with pytest.raises(gan.ModelFileError, match="refiner checkpoints"):
        gan.train_refiner(resumed, drawings, config, run_dir=run_dir)  # would overwrite: refused

    folder = gan.save(resumed, tmp_path / "model", config)
    loaded = gan.load(folder)
    assert loaded.refiner.start == 0.5
    drawn_alike(resumed, loaded, CATS, 3, seed=1)
    assert not changed(as_saved(resumed.refiner.get_weights()), loaded.refiner.get_weights())
    with pytest.raises(gan.GANInputError, match="StrokeRefiner for this model's 3 categories"):
        loaded.attach_refiner(StrokeRefiner(5, widths=(8, 16, 16)))

    last = run_dir / "checkpoints" / "refiner-0002.keras"
    last.write_bytes(last.read_bytes()[:1000])  # cut short, as a full disk leaves a file
    with pytest.warns(UserWarning, match="skipping unreadable refiner checkpoint: .* not a .keras archive"):
        again = gan.train_refiner(resumed, drawings, config, run_dir=run_dir, resume=True, verbose=0)
    for a, b in zip(straight.refiner.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # epoch 2 trained again from epoch 1's checkpoint


def test_a_model_saved_before_the_refiner_loads_without_one(trained, tmp_path):
    """A model.keras whose config has no "refiner" (saved before it existed) draws with the GAN alone."""
    model, config, _ = trained
    folder = gan.save(model, tmp_path / "old", config)
    with zipfile.ZipFile(folder / "model.keras") as z:
        items = {i.filename: z.read(i) for i in z.infolist()}
    saved = json.loads(items["config.json"])
    assert "refiner" in saved["config"]
    del saved["config"]["refiner"]
    items["config.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as z:
        for name, content in items.items():
            z.writestr(name, content)
    old = load_keras(tmp_path / "old.keras")
    assert old.refiner is None
    assert np.array_equal(old.generate(CATS, 2, seed=4), old.generate(CATS, 2, seed=4, refine=False))
