"""The figures the notebooks show: grids of drawings, training curves, confusions, mistakes.

Each function draws into a new matplotlib figure and returns it, so a notebook cell shows it and a
job can save it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


def drawing_grid(images, titles: Sequence[str] | None = None, cols: int = 10, size: float = 1.1,
                 title: str | None = None, colors: Sequence[str] | None = None):
    """A grid of 28x28 drawings (uint8 or float), optionally titled (and title-coloured) one by one."""
    images = np.asarray(images)
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * (1.25 if titles is not None else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7, color=colors[i] if colors is not None else "black")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def saliency_grid(images, maps, titles: Sequence[str], cols: int = 8, size: float = 1.3):
    """Canonical drawings with their saliency maps over them (`explain.overlay`: red raised the guess, blue
    lowered it), titled one by one."""
    from drawai.explain import overlay

    return drawing_grid(np.stack([overlay(x, m) for x, m in zip(images, maps)]), titles, cols=cols, size=size)


def rows_of_drawings(rows: dict[str, np.ndarray], size: float = 1.0):
    """One labelled row per entry: the same drawings shown several ways (e.g. raw / canonical / shifted)."""
    cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * size, len(rows) * size * 1.1), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = np.asarray(images[c])
                ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(history: list[dict]):
    """Loss and accuracy per epoch (train top-1 is on augmented drawings, so it runs below test)."""
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
    ax1.plot(epochs, [h["loss"] for h in history], label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [h["train_top1"] for h in history], label="train top-1 (augmented)")
    for key in ("top1", "top5"):
        if key in history[0]:
            ax2.plot(epochs, [h[key] for h in history], label=f"test {key[:3]}-{key[3:]}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    return fig


def per_class_bars(values: np.ndarray, categories: Sequence[str], n: int = 15, title: str = "per-class top-1",
                   chance: float | None = None):
    """The n worst and n best classes by a per-class score (with a dashed line at `chance` if given)."""
    order = np.argsort(values)
    pick = np.concatenate([order[:n], order[-n:]]) if len(order) > 2 * n else order
    fig, ax = plt.subplots(figsize=(10, max(3, 0.22 * len(pick))))
    ax.barh(range(len(pick)), values[pick], color=["tab:red" if values[i] < np.median(values) else "tab:green"
                                                   for i in pick])
    ax.set_yticks(range(len(pick)), [categories[i] for i in pick], fontsize=7)
    ax.set_xlim(0, 1)
    if chance is not None:
        ax.axvline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance ({chance:.0%})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title + (f" ({n} worst, {n} best)" if len(order) > 2 * n else ""))
    fig.tight_layout()
    return fig


def worst_confusions(confusion: np.ndarray, categories: Sequence[str], n: int = 12):
    """The confusion matrix restricted to the n classes with the lowest recall, as row fractions."""
    recall = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    n = min(n, len(recall))
    pick = np.argsort(recall)[:n]
    sub = confusion[np.ix_(pick, pick)] / np.maximum(confusion[pick].sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(sub, cmap="Blues", vmin=0, vmax=max(sub.max(), 1e-9))
    names = [categories[i] for i in pick]
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusions among the {n} hardest classes")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def gan_losses(history: list[dict]):
    """Generator and discriminator loss per epoch (non-saturating GAN losses, softplus)."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, [h["g_loss"] for h in history], label="generator")
    ax.plot(epochs, [h["d_loss"] for h in history], label="discriminator")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _worst_and_best(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n lowest and n highest values (all of them, in order, when there are few)."""
    order = np.argsort(values, kind="stable")
    return np.concatenate([order[:n], order[-n:]]) if len(order) > 2 * n else order


def gan_test_bars(generated: np.ndarray, real: np.ndarray, categories: Sequence[str], n: int = 15):
    """Per class: the classifier's top-1 on generated drawings of the label (GAN-test) next to its top-1 on
    real test drawings; with many classes, the n worst and n best by GAN-test."""
    pick = _worst_and_best(np.asarray(generated), n)
    y = np.arange(len(pick))
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(pick))))
    ax.barh(y - 0.2, np.asarray(real)[pick], height=0.4, color="tab:gray", label=f"real test ({np.mean(real):.1%})")
    ax.barh(y + 0.2, np.asarray(generated)[pick], height=0.4, color="tab:blue",
            label=f"generated ({np.mean(generated):.1%})")
    ax.set_yticks(y, [categories[i] for i in pick], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("classifier top-1")
    ax.set_title("GAN-test accuracy per class" + (f" ({n} worst, {n} best)" if len(generated) > 2 * n else ""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(pick) > 12 else -0.2), ncol=3, fontsize=8)
    fig.tight_layout()
    return fig


def fid_bars(generated: np.ndarray, shuffled: np.ndarray, floor: np.ndarray, categories: Sequence[str],
             n: int = 15):
    """Per-class FID: the class's generated drawings, another class's (shuffled-label control) and real
    training drawings (the floor), each against the class's test drawings; with many classes, the n best
    and n worst by generated FID."""
    pick = _worst_and_best(np.asarray(generated), n)
    y = np.arange(len(pick))
    fig, ax = plt.subplots(figsize=(8, max(3, 0.36 * len(pick))))
    for offset, values, color, name in ((-0.27, floor, "tab:gray", "real training (floor)"),
                                        (0, generated, "tab:blue", "generated"),
                                        (0.27, shuffled, "tab:red", "generated, shuffled labels (control)")):
        values = np.asarray(values)
        ax.barh(y + offset, values[pick], height=0.27, color=color, label=f"{name}: mean {values.mean():.1f}")
    ax.set_yticks(y, [categories[i] for i in pick], fontsize=7)
    ax.set_xlabel("FID in the classifier's feature space (lower is closer to the real test drawings)")
    ax.set_title("FID per class" + (f" ({n} best, {n} worst)" if len(generated) > 2 * n else ""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(pick) > 12 else -0.2), ncol=3, fontsize=8)
    fig.tight_layout()
    return fig


def nearest_pairs(generated, nearest, distances, reference: float, size: float = 1.1):
    """Generated drawings (top row) over their nearest training drawings (bottom row), titled with the
    feature distance; `reference` is the typical distance of a real test drawing to the training set."""
    generated, nearest = np.asarray(generated), np.asarray(nearest)
    cols = len(generated)
    fig, axes = plt.subplots(2, cols, figsize=(cols * size, 2.6 * size), squeeze=False)
    for c in range(cols):
        for r, img in enumerate((generated[c], nearest[c])):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
        axes[0, c].set_title(f"{distances[c]:.2f}", fontsize=7)
    axes[0, 0].set_ylabel("generated", fontsize=8)
    axes[1, 0].set_ylabel("nearest\ntraining", fontsize=8)
    fig.suptitle(f"the generated drawings closest to a training drawing (median real test drawing: {reference:.2f})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def variety_histograms(variety: dict[str, np.ndarray], variety_real: dict[str, np.ndarray],
                       names: Sequence[str] = ("precision", "recall", "coverage")):
    """Per-class fidelity and variety (`metrics.evaluate_generator`): for each measure, how the classes spread,
    generated drawings against the real-vs-real reference. A template per label sits at recall 0."""
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes[0], names):
        for values, color, label in ((variety_real[name], "tab:gray", "real vs real"),
                                     (variety[name], "tab:blue", "generated")):
            values = np.asarray(values)
            ax.hist(values, bins=bins, color=color, alpha=0.6, label=f"{label}: mean {values.mean():.2f}")
        ax.set_xlabel(f"{name} per class")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_ylabel("classes")
    fig.tight_layout()
    return fig


def real_and_generated(real: dict[str, np.ndarray], generated: dict[str, np.ndarray], size: float = 0.75):
    """One row per label: its real drawings on the left, the generator's on the right (canonical form)."""
    n_real, n_gen = max(len(v) for v in real.values()), max(len(v) for v in generated.values())
    cols = n_real + 1 + n_gen
    fig, axes = plt.subplots(len(real), cols, figsize=(cols * size, len(real) * size), squeeze=False)
    for r, name in enumerate(real):
        row = list(real[name]) + [None] + list(generated[name])
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if c < len(row) and row[c] is not None:
                ax.imshow(row[c], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    axes[0, n_real // 2].set_title("real drawings", fontsize=9)
    axes[0, n_real + 1 + n_gen // 2].set_title("generated", fontsize=9)
    fig.tight_layout(pad=0.2)
    return fig


def real_beside_generated(model, test_set, rows: int = 16, n: int = 8, seed: int = 1):
    """Categories spread over `model`'s (every len/rows-th): `n` real test drawings of each beside `n` the model
    draws at its default noise (`real_and_generated`); `test_set` holds the model's categories, as loaded."""
    from drawai import bitmaps

    shown = list(model.categories[:: max(1, len(model.categories) // rows)][:rows])
    real = {name: bitmaps.to_canonical(test_set.images[test_set.labels == list(test_set.categories).index(name)][:n])
            for name in shown}
    return real_and_generated(real, {name: model.generate([name], n, seed=seed) for name in shown})


def fight_rounds(result, n: int = 40, cols: int = 10):
    """The first n rounds of a fight (`drawai.fight.FightResult`): each generated drawing titled with the
    label asked for and the classifier's guess, green where it named the label, red where it did not."""
    shown = np.arange(min(n, result.rounds))
    guessed, wins = result.guessed, result.wins
    titles = [f"{result.labels[result.requested[i]]}\n-> {result.labels[guessed[i]]}" for i in shown]
    colors = ["tab:green" if wins[i] else "tab:red" for i in shown]
    return drawing_grid(result.images[shown], titles, cols=cols, colors=colors,
                        title="asked for -> the classifier's guess")


def augmentation_curve(result):
    """Top-1 against k generated drawings per class (`drawai.fight.AugmentationResult`): mean and 95 %
    confidence interval over seeds, on the real test split and on its rendering-shifted copy."""
    rows = result.summary()
    ks = np.array([r["k"] for r in rows])
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for metric, label, shift in (("top1", "real test split", -0.01), ("shifted_top1", "rendering-shifted test", 0.01)):
        mean = np.array([r[metric]["mean"] for r in rows])
        err = np.array([r[metric]["ci95"] for r in rows])
        x = ks + shift * max(ks.max(), 1)  # side by side, so the bars do not hide each other
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), marker="o", capsize=4, label=label)
        runs = [(x[list(ks).index(r["k"])], r[metric]) for r in result.runs]  # the single runs behind the means
        ax.plot(*zip(*runs), ".", color="gray", alpha=0.5, markersize=4)
    ax.set_xticks(ks)
    ax.set_xlabel("generated drawings added per class (k)")
    ax.set_ylabel("top-1")
    ax.set_title(f"training on real + generated drawings ({len(result.seeds)} seeds, 95 % CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
