"""What every trainer needs from the labels: class weights and seeded stratified folds.

Examples:
    >>> from hf_memotion.training import class_weights, stratified_folds
    >>> class_weights([0, 0, 0, 1], num_classes=2).tolist()
    [0.6666666666666666, 2.0]
    >>> [len(val) for _, val in stratified_folds([0, 1] * 10, n_splits=5, seed=0)]
    [4, 4, 4, 4, 4]
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold

__all__ = ["class_weights", "stratified_folds"]


def class_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class loss weights proportional to the inverse class frequency (the paper's weighted loss).

    ``w_c = n / (num_classes * n_c)``: scikit-learn's ``"balanced"`` weights, so a balanced label set
    gets weight 1 everywhere and the sample-weighted mean weight is 1. A class absent from
    ``labels`` gets weight 0 (it contributes no loss term anyway); written by hand only because
    ``sklearn.utils.class_weight.compute_class_weight`` refuses absent classes.

    Args:
        labels: Class ids of the training rows.
        num_classes: Number of classes of the problem.

    Returns:
        A float64 array of shape ``(num_classes,)``.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0:
        raise ValueError("class_weights needs at least one label")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be class ids in 0..{num_classes - 1}, got values {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = labels.size / (num_classes * counts[present])
    return weights


def _stratification_key(labels: np.ndarray, n_splits: int) -> np.ndarray:
    """One key per row; for several label columns, their combination, rare combinations merged."""
    if labels.ndim == 1:
        return labels
    keys = np.array(["_".join(map(str, row)) for row in labels])
    counts = Counter(keys)
    return np.array([k if counts[k] >= n_splits else "rare" for k in keys])


def stratified_folds(
    labels: Sequence[int] | np.ndarray, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded, reproducible stratified k-fold splits (scikit-learn's ``StratifiedKFold``, shuffled).

    Args:
        labels: Class ids of shape ``(n,)``, or ``(n, k)`` to stratify on the combination of k label
            columns (combinations rarer than ``n_splits`` are pooled).
        n_splits: Number of folds (the paper: 5).
        seed: Shuffle seed; the same seed and labels give the same folds.

    Returns:
        ``n_splits`` pairs ``(train_indices, validation_indices)``; every row is in exactly one
        validation fold.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2):
        raise ValueError(f"labels must have shape (n,) or (n, k), got {labels.shape}")
    if n_splits < 2 or n_splits > len(labels):
        raise ValueError(f"n_splits must be in 2..{len(labels)} (the number of rows), got {n_splits}")
    key = _stratification_key(labels, n_splits)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [(train, val) for train, val in splitter.split(np.zeros(len(key)), key)]
