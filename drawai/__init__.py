"""draw-ai: machine learning on Google's Quick, Draw! doodles (PyTorch classifier, Keras GAN, the fight)."""


def load_model(path, **options):
    """Open any draw-ai model folder (`drawai.model_folder`): a `classifier.Classifier` or a generator
    (`gan.load`), by its manifest's kind. `options` go to the kind's loader (e.g. `categories=` for a classifier)."""
    from drawai import model_folder  # each kind's library is imported only when a model of that kind is opened

    if model_folder.read(path)["kind"] == "classifier":
        from drawai.classifier import Classifier

        return Classifier.load(path, **options)
    from drawai import gan

    return gan.load(path, **options)
