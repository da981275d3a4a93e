"""The one test behind every "must be an integer >= low" error: each caller raises its own error, in its own words."""

import numpy as np


def is_whole(value, low: int | None = 0) -> bool:
    """True for an integer (a numpy one too; never a bool, though Python counts it as one) of at least `low` (None:
    any integer)."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and (low is None or value >= low)
