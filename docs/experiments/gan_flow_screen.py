"""Flow matching on the embedded sample (docs/experiments/gan.md, "A stroke refiner"): a class-conditional
rectified flow trained on the whole path from noise to drawing at the GAN's CPU time, judged alone (`judge`) and as
a refiner of generator-345's drawings (`sdedit`: each drawing mixed with noise back to time `start`, then carried to
time 1 by the flow). Rows appended to gan-flow-screen-345.jsonl.

    python docs/experiments/gan_flow_screen.py train runs/gan-flow 3788     # CPU seconds: the full preset's
    python docs/experiments/gan_flow_screen.py judge runs/gan-flow 8 2.0    # midpoint steps, guidance; 20 a class
    python docs/experiments/gan_flow_screen.py sdedit runs/gan-flow 0.5 5   # start, steps; with CAS (15 epochs)

The network is a small U-Net (28, 14 and 7 pixels; 1.1 M parameters) with the time and label added in every
block; one label in ten is dropped in training (the token N_CLASSES), for classifier-free guidance. Its weights'
exponential average (0.999) is what is judged. The sdedit row above was judged with the average after 16 epochs.
"""

import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from drawai import classifier, data, gan, metrics, seeds
from drawai.classifier import Classifier
from drawai.paths import CLASSIFIER_DIR, GENERATOR_DIR

ROWS = Path(__file__).with_name("gan-flow-screen-345.jsonl")
N_CLASSES = 345
NULL = N_CLASSES  # the label-free token, for classifier-free guidance
WIDTHS = (32, 64, 128)
BATCH, LR, EMA = 128, 5e-4, 0.999
SHOW = ["cat", "bicycle", "house", "frying pan", "scissors", "crocodile", "airplane", "tree", "face", "fish",
        "clock", "umbrella"]


def block(x, c, channels):
    h = layers.Conv2D(channels, 3, padding="same")(layers.Activation("swish")(layers.GroupNormalization(8)(x)))
    h = h + layers.Reshape((1, 1, channels))(layers.Dense(channels)(c))
    h = layers.Conv2D(channels, 3, padding="same")(layers.Activation("swish")(layers.GroupNormalization(8)(h)))
    return (x if x.shape[-1] == channels else layers.Conv2D(channels, 1)(x)) + h


def unet(widths=WIDTHS) -> keras.Model:
    x = keras.Input((28, 28, 1))
    t = keras.Input(())
    y = keras.Input((), dtype="int32")
    angles = ops.expand_dims(t, -1) * ops.exp(ops.linspace(0.0, 6.0, 32))
    c = layers.Dense(128, activation="swish")(ops.concatenate([ops.sin(angles), ops.cos(angles)], -1))
    c = layers.Dense(128, activation="swish")(c + layers.Embedding(N_CLASSES + 1, 128)(y))
    h0 = block(layers.Conv2D(widths[0], 3, padding="same")(x), c, widths[0])
    h1 = block(layers.Conv2D(widths[1], 3, strides=2, padding="same")(h0), c, widths[1])
    h2 = layers.Conv2D(widths[2], 3, strides=2, padding="same")(h1)
    h2 = block(block(h2, c, widths[2]), c, widths[2])
    u1 = block(layers.Concatenate()([layers.UpSampling2D()(h2), h1]), c, widths[1])
    u0 = block(layers.Concatenate()([layers.UpSampling2D()(u1), h0]), c, widths[0])
    out = layers.Conv2D(1, 3, padding="same")(layers.Activation("swish")(layers.GroupNormalization(8)(u0)))
    return keras.Model([x, t, y], out)


class Flow:
    """Drawing from the flow: `steps` midpoint steps from noise (time 0) to time 1, `guidance` > 1 with
    classifier-free guidance."""

    def __init__(self, net, names, steps=8, guidance=1.0):
        self.net, self.categories, self.steps, self.guidance = net, names, steps, guidance
        self._v = tf.function(lambda x, t, y: self.net([x, t, y], training=False))

    def velocity(self, x, t, y):
        tt = tf.fill((tf.shape(x)[0],), t)
        if self.guidance == 1.0:
            return self._v(x, tt, y)
        both = self._v(tf.concat([x, x], 0), tf.concat([tt, tt], 0), tf.concat([y, tf.fill(tf.shape(y), NULL)], 0))
        conditional, free = tf.split(both, 2)
        return free + self.guidance * (conditional - free)

    def carry(self, x, labels, start):
        y, dt = tf.constant(labels, tf.int32), (1.0 - start) / self.steps
        for i in range(self.steps):
            t = start + i * dt
            x = x + dt * self.velocity(x + 0.5 * dt * self.velocity(x, t, y), t + 0.5 * dt, y)
        return np.clip((x.numpy()[..., 0] + 1) / 2, 0, 1).astype(np.float32)

    def generate(self, labels, n=1, seed=None, **_):
        labels = np.repeat(np.atleast_1d(labels), n)
        out = []
        for i in range(0, len(labels), 2048):
            noise = np.random.default_rng([0 if seed is None else seed, i]).standard_normal(
                (len(labels[i:i + 2048]), 28, 28, 1)).astype(np.float32)
            out.append(self.carry(tf.constant(noise), labels[i:i + 2048], 0.0))
        return np.concatenate(out)


class Refined:
    """SDEdit: generator-345's drawings mixed with noise back to time `start`, then carried to time 1 by the flow."""

    def __init__(self, generator, flow, start):
        self.generator, self.flow, self.start = generator, flow, start
        self.categories = list(generator.categories)

    def generate(self, labels, n=1, seed=None, **options):
        drawn = self.generator.generate(labels, n, seed, **options)
        labels = np.repeat(np.atleast_1d(labels), n)
        out = []
        for i in range(0, len(labels), 2048):
            x1 = drawn[i:i + 2048, ..., None] * 2 - 1
            noise = np.random.default_rng([[0 if seed is None else seed, i], 99]).standard_normal(x1.shape)
            x = tf.constant((self.start * x1 + (1 - self.start) * noise).astype(np.float32))
            out.append(self.flow.carry(x, labels[i:i + 2048], self.start))
        return np.concatenate(out)


def grid(images, path, cols=8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(images) // cols
    big = images[:rows * cols].reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)
    plt.imsave(path, big, cmap="gray", vmin=0, vmax=1)


def train(run: Path, budget: float) -> None:
    run.mkdir(parents=True, exist_ok=True)
    names = list(data.load_sample("all").categories)
    x, y = gan.training_arrays(data.train_test(data.load_sample(names))[0])
    net, ema = unet(), unet()
    opt = keras.optimizers.Adam(LR)
    state = {"epoch": 0, "cpu": 0.0, "wall": 0.0, "losses": []}
    if (run / "state.json").exists():  # Adam's moments are not kept: a resumed screen restarts them
        state = json.loads((run / "state.json").read_text())
        net.load_weights(run / "net.weights.h5")
        ema.load_weights(run / "ema.weights.h5")
    else:
        ema.set_weights(net.get_weights())

    @tf.function
    def step(x1, labels, seed):
        n = tf.shape(x1)[0]
        x0 = tf.random.stateless_normal(tf.shape(x1), seed)
        t = tf.sigmoid(tf.random.stateless_normal((n,), seed + 1))  # logit-normal times
        labels = tf.where(tf.random.stateless_uniform((n,), seed + 2) < 0.1, NULL, labels)
        xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * x1
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((net([xt, t, labels], training=True) - (x1 - x0)) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        for average, weight in zip(ema.trainable_variables, net.trainable_variables):
            average.assign(EMA * average + (1 - EMA) * weight)
        return loss

    show = [names.index(s) for s in SHOW]
    while state["cpu"] < budget:
        epoch = state["epoch"]
        order = seeds.rng(0, epoch).permutation(len(x))
        cpu, wall, losses = time.process_time(), time.time(), []
        for i in range(0, len(order) - BATCH + 1, BATCH):
            idx = order[i:i + BATCH]
            losses.append(float(step(x[idx], y[idx], tf.constant([epoch, i], tf.int32))))
        state["epoch"] += 1
        state["cpu"] += time.process_time() - cpu
        state["wall"] += time.time() - wall
        state["losses"].append(float(np.mean(losses)))
        net.save_weights(run / "net.weights.h5")
        ema.save_weights(run / "ema.weights.h5")
        (run / "state.json").write_text(json.dumps(state))
        grid(Flow(ema, names).generate(show, 8, seed=0), run / f"grid-{state['epoch']:03d}.png")
        print(f"epoch {state['epoch']} loss {state['losses'][-1]:.4f} cpu {state['cpu']:.0f} wall {state['wall']:.0f}",
              flush=True)


def judged_by_the_classifier(model, names, per_class: int, tag: str, run: Path, cas: bool) -> None:
    train_set, test_set = data.train_test(data.load_sample(names))
    started = time.time()
    evaluation = metrics.evaluate_generator(model, Classifier.load(CLASSIFIER_DIR), train_set, test_set,
                                            n_per_class=per_class)
    row = {"tag": tag, "eval_wall_s": round(time.time() - started), **evaluation.summary()}
    show = [names.index(s) for s in SHOW]
    grid(evaluation.generated.reshape(len(names), per_class, 28, 28)[show, :8].reshape(-1, 28, 28),
         run / f"judged-{tag}.png")
    if cas:
        row.update(metrics.classification_accuracy_score(model, train_set, test_set, classifier.TrainConfig(epochs=15),
                                                         run_dir=run / f"cas-{tag}", progress=False))
    print(json.dumps(row), flush=True)
    with open(ROWS, "a") as f:
        f.write(json.dumps(row) + "\n")


def load_average(run: Path) -> keras.Model:
    net = unet()
    net.load_weights(run / "ema.weights.h5")
    return net


if __name__ == "__main__":
    what, run = sys.argv[1], Path(sys.argv[2])
    numbers = [float(v) for v in sys.argv[3:]]
    if what == "train":
        train(run, numbers[0] if numbers else 3788)
    else:
        names = list(data.load_sample("all").categories)
        if what == "judge":  # at 20 drawings a class: each is 8 x 2 x 2 passes of the network
            steps, guidance = int(numbers[0]), numbers[1]
            flow = Flow(load_average(run), names, steps, guidance)
            judged_by_the_classifier(flow, names, int(os.environ.get("PER", "20")), f"flow-s{steps}-g{guidance}",
                                     run, cas=False)
        else:
            start, steps = numbers[0], int(numbers[1])
            model = Refined(gan.load(GENERATOR_DIR), Flow(load_average(run), names, steps), start)
            judged_by_the_classifier(model, names, 80, f"sdedit-t{start}-s{steps}", run, cas=True)
