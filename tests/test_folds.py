import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from hf_memotion.training import class_weights, stratified_folds


def test_class_weights_match_sklearn_balanced_and_are_inverse_frequency():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=500, p=[0.6, 0.25, 0.1, 0.05])
    ours = class_weights(labels, 4)
    np.testing.assert_allclose(ours, compute_class_weight("balanced", classes=np.arange(4), y=labels))
    counts = np.bincount(labels)
    np.testing.assert_allclose(ours * counts, np.full(4, ours[0] * counts[0]))  # w_c * n_c is constant


def test_class_weights_absent_class_gets_zero_and_bad_labels_fail():
    assert class_weights([0, 0, 2], 3).tolist() == [0.5, 0.0, 1.0]
    with pytest.raises(ValueError, match="class ids in 0..1"):
        class_weights([0, 2], 2)
    with pytest.raises(ValueError, match="at least one"):
        class_weights([], 2)


def test_stratified_folds_cover_every_row_once_and_are_reproducible():
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=103, p=[0.7, 0.2, 0.1])
    folds = stratified_folds(labels, n_splits=5, seed=7)
    validation = np.concatenate([val for _, val in folds])
    assert sorted(validation.tolist()) == list(range(103))
    for train, val in folds:
        assert not set(train) & set(val)
        assert len(train) + len(val) == 103
        for c in range(3):  # each class spread evenly: within one row of its share
            assert abs((labels[val] == c).sum() - (labels == c).sum() / 5) <= 1
    again = stratified_folds(labels, n_splits=5, seed=7)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = stratified_folds(labels, n_splits=5, seed=8)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_stratified_folds_on_label_combinations():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(80, 3))
    folds = stratified_folds(labels, n_splits=4, seed=0)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(80))
    with pytest.raises(ValueError, match="n_splits"):
        stratified_folds([0, 1], n_splits=5)
