"""Notebook widgets (ipycanvas + ipywidgets). DrawingPad (pad.py): draw with mouse or finger, see the 28x28
bitmap the model sees and its top-5 guesses update while you draw. GeneratorPanel (generate.py): pick a category,
a seed and a count, and see the generator's drawings with the classifier's verdict on each. FightArena
(arena.py): the GAN draws, the classifier guesses, on a timer, with a running score (`drawai.fight` keeps the
rules). common.py holds what they share.
"""

from drawai.widgets.arena import FightArena, category_choices, score_text
from drawai.widgets.common import one_torch_thread, redraw_on_client_ready
from drawai.widgets.generate import VARIETY_LABELS, GeneratorPanel, describe_noise, variety_choice
from drawai.widgets.pad import DrawingPad

__all__ = ["DrawingPad", "GeneratorPanel", "FightArena", "VARIETY_LABELS", "describe_noise", "variety_choice",
           "score_text", "category_choices", "redraw_on_client_ready", "one_torch_thread"]
