"""How calibrated probabilities are: log-loss, top-label expected calibration error, reliability curves.

Plain NumPy functions on ``(n, classes)`` probabilities and ``(n,)`` class ids, used by the stackers' calibration
(:mod:`hf_memotion.ensemble.calibration`) and by the training report (ECE before and after, the reliability
diagram).

Examples:
    >>> import numpy as np
    >>> round(expected_calibration_error(np.array([[0.8, 0.2]] * 10), np.array([0] * 8 + [1] * 2)), 6)
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "compare_calibration",
    "expected_calibration_error",
    "log_loss",
    "pooled_reliability",
    "reliability_curve",
]

_EPS = 1e-12


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold classes (probabilities clipped at 1e-12).

    Examples:
        >>> round(log_loss(np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([0, 0])), 4)
        0.3993
    """
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label expected calibration error: the confidence-accuracy gap over ``bins`` equal-width bins, weighted.

    Examples:
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
        0.4
    """
    return _gap(*reliability_curve(probabilities, labels, bins))


def _gap(confidence: np.ndarray, accuracy: np.ndarray, counts: np.ndarray) -> float:
    """The count-weighted mean confidence-accuracy gap over the bins that hold rows."""
    seen = counts > 0
    total = counts[seen].sum()
    return float(np.sum(counts[seen] * np.abs(confidence[seen] - accuracy[seen])) / total) if total else 0.0


def reliability_curve(
    probabilities: np.ndarray | Sequence, labels: np.ndarray | Sequence, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: the mean top-label confidence, the accuracy of the top label, and the rows in it.

    Bins without rows hold ``NaN`` confidence and accuracy (and a count of 0), so a diagram can skip them.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    return _binned(probabilities.max(axis=1), (probabilities.argmax(axis=1) == labels).astype(float), bins)


def _binned(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return mean_confidence, accuracy, counts


def _pooled(probabilities: Mapping[str, np.ndarray], labels: Mapping[str, Any], problems: Sequence[str]):
    """Every problem's top-label confidence and correctness, pooled (problems of different class counts)."""
    confidence = np.concatenate([np.asarray(probabilities[p]).max(axis=1) for p in problems])
    correct = np.concatenate([np.asarray(probabilities[p]).argmax(axis=1) == np.asarray(labels[p]) for p in problems])
    return confidence, correct.astype(float)


def pooled_reliability(
    probabilities: Mapping[str, np.ndarray], labels: Mapping[str, Any], problems: Sequence[str], bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`reliability_curve` over several problems' answers together (a subtask's)."""
    return _binned(*_pooled(probabilities, labels, problems), bins)


def compare_calibration(
    before: Mapping[str, np.ndarray],
    after: Mapping[str, np.ndarray],
    labels: Mapping[str, Any],
    methods: Mapping[str, str] | None = None,
    bins: int = 15,
) -> dict[str, Any]:
    """Expected calibration error and log-loss of the held-out answers before and after calibration.

    Args:
        before: The meta-estimators' own probabilities per problem, ``(n, classes)``.
        after: The calibrated probabilities per problem.
        labels: The true class ids per problem.
        methods: The calibration chosen per problem (reported as given).
        bins: Confidence bins of the ECE.

    Returns:
        ``{"methods": ..., "problems": {problem: {"ece_before", "ece_after", "log_loss_before", "log_loss_after"}},
        "subtasks": {"A" | "B" | "C": {"ece_before", "ece_after"}}}``, a subtask's ECE over its problems' answers
        pooled.

    Examples:
        >>> p = {"humour": np.array([[0.99, 0.01], [0.99, 0.01]])}
        >>> q = {"humour": np.array([[0.5, 0.5], [0.5, 0.5]])}
        >>> compare_calibration(p, q, {"humour": np.array([0, 1])})["subtasks"]["B"]
        {'ece_before': 0.49, 'ece_after': 0.0}
    """
    from hf_memotion.tasks import SUBTASKS

    shared = [p for p in after if p in labels and p in before]
    problems = {
        p: {
            "ece_before": expected_calibration_error(before[p], labels[p], bins),
            "ece_after": expected_calibration_error(after[p], labels[p], bins),
            "log_loss_before": log_loss(before[p], labels[p]),
            "log_loss_after": log_loss(after[p], labels[p]),
        }
        for p in shared
    }
    subtasks = {}
    for subtask, members in SUBTASKS.items():
        present = [p for p in members if p in shared]
        if present:
            subtasks[subtask] = {
                f"ece_{when}": _pooled_ece(found, labels, present, bins)
                for when, found in (("before", before), ("after", after))
            }
    return {"methods": dict(methods or {}), "problems": problems, "subtasks": subtasks}


def _pooled_ece(probabilities: Mapping[str, np.ndarray], labels: Mapping[str, Any], problems, bins: int) -> float:
    return round(_gap(*pooled_reliability(probabilities, labels, problems, bins)), 6)
