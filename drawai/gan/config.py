"""What decides a GAN and its training run: the two recipes, the presets and each recipe's optimiser, `GANConfig`,
the limits of `generate`, and the two errors that every part of `drawai.gan` raises."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from drawai import categories as cats
from drawai.checks import is_whole

RECIPES = ("conditional", "per_label")
NOISES = ("normal", "fitted")  # what generate() draws its noise from (see FittedNoise)
# GANConfig fields the per-label recipe lacks
CONDITIONAL_ONLY = ("aux_weight", "aux_weight_start", "diff_augment", "reconstruction", "kl_weight",
                    "aux_on_redraws", "ema")
REFINER_FIELDS = ("refiner_epochs", "refine_start", "refiner_width")  # GANConfig fields of the refiner (conditional)
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
    # Last, a stroke refiner redraws each drawing from time 0.7 in people's strokes (the GAN's are blurred and broken,
    # which is where its drawings fail as training data); its 3 epochs, about 7 minutes, keep the run within the hour.
    "full": dict(categories="all", epochs=50, width=64, aux_weight=0.3, diff_augment=True, reconstruction=10.0,
                 aux_on_redraws=True, lr=5e-4, noise="fitted", truncation=None, refiner_epochs=3, refine_start=0.7),
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


def check_truncation(value, what: str = "truncation") -> None:
    """A GANInputError unless `value` is a truncation that `generate` takes: None or a number in [0.05, 10]."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, float | int)
                              or not 0.05 <= value <= 10):
        raise GANInputError(f"{what} must be a number in [0.05, 10] or None, got {value!r}")


class ModelFileError(ValueError):
    """A file or folder that is not a draw-ai GAN model or run: foreign, corrupt, unsafe or mismatched."""


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
    # conditional only: the stroke refiner (`gan.refiner.StrokeRefiner`), trained after the GAN for this many epochs by
    # flow matching on the training drawings (0: none). generate() then redraws each drawing from `refine_start` on
    # the path from noise (0) to drawing (1): the GAN decides what is drawn and where, the refiner how strokes look.
    refiner_epochs: int = 0
    refine_start: float = 0.7  # lower redraws more of each drawing (cleaner strokes, less of the GAN's shape kept)
    refiner_width: int = 32  # the refiner's channels at 28 px (doubled at 14 and 7 px); a multiple of 8
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
        if not is_whole(self.refiner_epochs, 0):
            raise GANInputError(f"GANConfig.refiner_epochs must be an integer >= 0, got {self.refiner_epochs!r}")
        if self.recipe == "per_label" and self.refiner_epochs:
            raise GANInputError("refiner_epochs is for the conditional recipe")
        if isinstance(self.refine_start, bool) or not (isinstance(self.refine_start, float | int)
                                                       and 0.1 <= self.refine_start <= 0.95):
            raise GANInputError(f"GANConfig.refine_start must be a time in [0.1, 0.95], got {self.refine_start!r}")
        if not is_whole(self.refiner_width, 8) or self.refiner_width % 8:
            raise GANInputError(f"GANConfig.refiner_width must be a multiple of 8 (group norm's 8 groups), "
                                f"got {self.refiner_width!r}")
        check_truncation(self.truncation, "GANConfig.truncation")
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
                         or k not in CONDITIONAL_ONLY + REFINER_FIELDS + ("lr", "beta_1", "batch_size", "noise")}
        return cls(**{**RECIPE_DEFAULTS[recipe], **preset_values, "recipe": recipe, "preset": preset, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
