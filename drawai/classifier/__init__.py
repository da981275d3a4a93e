"""The PyTorch doodle classifier: networks, `Classifier` (prediction, evaluation, safe save/load) and training.

Models see only the canonical form (`drawai.bitmaps`); `Classifier.predict` takes any bitmap and gets it there
first. Training is robust to rendering by augmenting in that form (small rotations, scale, shear, shifts, mirror
images, stroke weight), so drawings from a canvas, a GAN or Google's numpy_bitmap files are read like the sample
the model was trained on.

    clf = Classifier.load("models/classifier-345")
    clf.predict(bitmap)                                   # [(label, probability), ...] top 5
    clf, history = train(train_set, TrainConfig(epochs=30), test_set=test_set, checkpoint_dir="runs/x")

The package, module by module (each imports only those before it):

- `networks`: the CNN and the two recipes it is compared with, `build_model`, and the fused copy predictions run.
- `model`: `Classifier` and how one is scored (`evaluate`, `top_k`).
- `training`: `TrainConfig`, `train` and its steps, the augmentation, checkpoints.
"""

from drawai.classifier.model import (
    WEIGHTS_FILE,
    Classifier,
    canonical_images,
    evaluate,
    input_form,
    top_k,
    top_k_sharded,
)
from drawai.classifier.networks import (
    ARCHITECTURES,
    DoodleCNN,
    DoodleNet,
    InferenceNet,
    OriginalMLP,
    build_model,
    for_inference,
    mirror_probabilities,
    native_bf16,
    resolved_arch_kwargs,
)
from drawai.classifier.training import (
    FILL_INK_LEVEL,
    HEAVY_FRACTION,
    ScalarLog,
    TrainConfig,
    augment,
    heavier_strokes,
    load_checkpoint,
    save_checkpoint,
    train,
    train_on_own_drawings,
)

__all__ = [
    # networks
    "ARCHITECTURES", "DoodleCNN", "DoodleNet", "InferenceNet", "OriginalMLP", "build_model", "for_inference",
    "mirror_probabilities", "native_bf16", "resolved_arch_kwargs",
    # model
    "WEIGHTS_FILE", "Classifier", "canonical_images", "evaluate", "input_form", "top_k", "top_k_sharded",
    # training
    "FILL_INK_LEVEL", "HEAVY_FRACTION", "ScalarLog", "TrainConfig", "augment", "heavier_strokes", "load_checkpoint",
    "save_checkpoint", "train", "train_on_own_drawings",
]
