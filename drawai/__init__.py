"""draw-ai: machine learning on Google's Quick, Draw! doodles (PyTorch classifier, Keras GAN, the fight)."""
