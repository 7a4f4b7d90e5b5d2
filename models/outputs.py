"""Reading the reward network's outputs, one way for evaluation and for the service.

A segment is an "error" when P(error) > 0.5 at its marker: the paper's 2-way argmax, no tuned
threshold. `fgrm eval` and the service's scorers both decide through `is_error`, so the
reported accuracy is the accuracy of the rewards that are served.
"""
from __future__ import annotations

import numpy as np

ERROR_THRESHOLD = 0.5


def softmax_last(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (stable: max subtracted first)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def error_probability(segment_logits: np.ndarray) -> np.ndarray:
    """P(error) from 2-way logits (..., 2)."""
    return softmax_last(segment_logits)[..., 1]


def is_error(p_error):
    """P(error) > 0.5: a bool for one probability, a boolean array for an array of them."""
    return p_error > ERROR_THRESHOLD
