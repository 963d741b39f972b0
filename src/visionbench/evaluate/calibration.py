"""Temperature scaling (Guo et al. 2017): one number T, fitted on the validation split by
minimising its negative log-likelihood, that divides every logit. It works on saved
probabilities, as log p / T before the softmax equals logits / T up to a constant, so it
applies to any model of a run (ensembles and test-time augmentation rows included), and it
never changes which class is predicted.

Example:
    >>> import numpy as np
    >>> prob = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> scaled(prob, 1.0).round(6).tolist()
    [[0.9, 0.1], [0.2, 0.8]]
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

# The fitted temperature is searched in [1/20, 20]: beyond, a model is not miscalibrated
# but broken, and the bound keeps the search finite on separable validation sets.
LOWEST, HIGHEST = 0.05, 20.0


def scaled(prob: np.ndarray, temperature: float) -> np.ndarray:
    """(N, classes) probabilities with every logit divided by `temperature`."""
    logits = np.log(np.clip(prob, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(prob: np.ndarray, y_true: np.ndarray) -> float:
    """Mean -log p(true class)."""
    chosen = prob[np.arange(len(y_true)), y_true]
    return float(-np.log(np.clip(chosen, 1e-12, 1.0)).mean())


def fit_temperature(prob: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `prob` (validation)."""
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(scaled(prob, float(np.exp(log_t))), y_true),
        bounds=(np.log(LOWEST), np.log(HIGHEST)), method="bounded",
        options={"xatol": 1e-5})
    return float(np.exp(found.x))
