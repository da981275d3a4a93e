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
