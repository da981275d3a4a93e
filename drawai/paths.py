"""The repository's folders, named once: every module that reads the tree or runs something in it starts here."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the package sits in the repository root
NOTEBOOKS = ROOT / "notebooks"
MODELS = ROOT / "models"
SCRIPTS = ROOT / "scripts"
CLASSIFIER_DIR = MODELS / "classifier-345"  # the shipped classifier
GENERATOR_DIR = MODELS / "generator-345"  # the shipped generator
