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
With `refiner_epochs` (the `full` preset), a `StrokeRefiner` trains after that, by flow matching on the training
drawings, and `generate` redraws each drawing with it from time `refine_start` (SDEdit): the GAN's shapes kept,
in strokes like people's (`generate(..., refine=False)`: the GAN's own), through the refiner's own `InkCurve`
(fitted on its redrawings: no background grain, full-ink cores).

Training is seeded and resumable: the batch order of epoch e and the noise of step s are pure
functions of (seed, e) and (seed, s), and every epoch ends with an atomically written checkpoint
(`run_dir/checkpoints/epoch-XXXX.keras`: weights, optimizer state, step counter, and for the
per-label bank its dropout seeds too; the refiner's are `refiner-XXXX.keras`), so `resume=True` continues after
a kill from the last complete checkpoint and ends where an uninterrupted run would have.

A model on disk is a folder: `model.keras` (loaded with safe_mode=True, never executes pickled code)
and `manifest.json` in the schema of every draw-ai model folder (`drawai.model_folder`).

Past one machine (docs/scaling.md): `train` also takes the cached full dataset (`distributed.NumpyBitmapDataset`,
memory-mapped .npy files read through a `tf.data` pipeline that canonicalises each batch as it goes), and runs
under any tf.distribute strategy whose scope it is called in (`scripts/train_gan_distributed.py`):

    with tf.distribute.MirroredStrategy().scope():    # every GPU of this machine; MultiWorkerMirroredStrategy
        model = gan.train(train_set, config, run_dir)   # with TF_CONFIG for several machines

`batch_size` stays the global batch: each replica takes its slice of every batch, so the batches, the number
of steps and the checkpoints are those of one process (the chief alone writes them, and any number resumes them).

The package, module by module (each imports only those before it):

- `config`: the recipes, presets and `GANConfig`; the errors.
- `networks`: the Keras layers and networks, and what they are fed (`noise_batch`, `diff_augment`).
- `data`: the training arrays, the batch order, the tf.data pipelines; which of several workers writes.
- `refiner`: `StrokeRefiner`, the flow-matching U-Net that redraws a generated drawing's strokes.
- `model`: `ConditionalGAN` and `PerLabelGAN`, what they share, and `build`.
- `io`: the model folder (`save`, `load`) and `load_keras`, the safe way every `.keras` file of a GAN is opened.
- `training`: `train`, its callbacks, and resuming a run from its checkpoints.
"""

from drawai.gan.config import (
    CONDITIONAL_ONLY,
    INPUT_FORM,
    MAX_GENERATE,
    MODEL_FILE,
    NOISES,
    PRESETS,
    RECIPE_DEFAULTS,
    RECIPES,
    REFINER_FIELDS,
    GANConfig,
    GANInputError,
    ModelFileError,
)
from drawai.gan.data import epoch_batches, training_arrays
from drawai.gan.io import load, save
from drawai.gan.model import GAN_CLASSES, ConditionalGAN, PerLabelGAN, build
from drawai.gan.networks import (
    ConditionalBatchNorm,
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
from drawai.gan.training import (
    EpochLog,
    EpochPrinter,
    SampleGrid,
    configure_threads,
    grid_image,
    train,
    train_refiner,
)

__all__ = [
    # config
    "CONDITIONAL_ONLY", "REFINER_FIELDS", "INPUT_FORM", "MAX_GENERATE", "MODEL_FILE", "NOISES", "PRESETS",
    "RECIPE_DEFAULTS", "RECIPES", "GANConfig", "GANInputError", "ModelFileError",
    # networks
    "ConditionalBatchNorm", "ConditionalEncoder", "ConditionalGenerator", "DCGANDiscriminator", "DCGANGenerator",
    "FittedNoise", "InkCurve", "ProjectionDiscriminator", "diff_augment", "noise_batch",
    # model
    "GAN_CLASSES", "ConditionalGAN", "PerLabelGAN", "build",
    # data
    "epoch_batches", "training_arrays",
    # refiner
    "StrokeRefiner",
    # training
    "EpochLog", "EpochPrinter", "SampleGrid", "configure_threads", "grid_image", "train", "train_refiner",
    # io
    "load", "save",
]
