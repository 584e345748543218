"""The demo data's planted signal: each modality alone learns part of it, the two together more.

Probed with plain scikit-learn models (no deep learning): 8x8 standardised pixels for the image,
bag-of-words for the text, and a logistic-regression stack over their out-of-fold probabilities.
"""

import datasets
import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import scale

from hf_memotion.data import load_memotion, load_rgb_image, make_demo_data
from hf_memotion.metrics import memotion_scores
from hf_memotion.tasks import PROBLEMS


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    root = make_demo_data(tmp_path_factory.mktemp("signal") / "demo", n_train=500, n_test=0, seed=11)
    train = load_memotion(root)["train"].cast_column("image", datasets.Image(decode=False))
    x_image = scale(
        np.stack([np.asarray(load_rgb_image(x).resize((8, 8)), dtype=float).ravel() for x in train["image"]])
    )
    x_text = CountVectorizer(binary=True).fit_transform(train["text"])
    predictions = {"image": {}, "text": {}, "both": {}}
    references = {}
    for problem in PROBLEMS:
        y = np.asarray(train[problem.name])
        references[problem.name] = y
        model = LogisticRegression(max_iter=3000, class_weight="balanced")
        p_image = cross_val_predict(model, x_image, y, cv=5, method="predict_proba")
        p_text = cross_val_predict(model, x_text, y, cv=5, method="predict_proba")
        stacked = np.hstack([np.log(p_image + 1e-6), np.log(p_text + 1e-6)])
        predictions["image"][problem.name] = p_image.argmax(1)
        predictions["text"][problem.name] = p_text.argmax(1)
        predictions["both"][problem.name] = cross_val_predict(model, stacked, y, cv=5)
    return {k: memotion_scores(v, references) for k, v in predictions.items()}, references


def test_each_modality_alone_learns_part_of_the_signal(probe):
    scores, references = probe
    majority = memotion_scores({n: np.full_like(y, np.bincount(y).argmax()) for n, y in references.items()}, references)
    for modality in ("image", "text"):
        for subtask in ("subtask_a", "subtask_b", "subtask_c"):
            assert scores[modality][subtask] > majority[subtask] + 0.15, (modality, subtask)
        assert scores[modality]["subtask_c"] < 0.65  # one modality cannot tell the intensity grades apart


def test_cross_modal_stack_beats_both_modalities(probe):
    scores, _ = probe
    for subtask in ("subtask_b", "subtask_c"):
        assert scores["both"][subtask] > max(scores["image"][subtask], scores["text"][subtask]) + 0.02, subtask
    assert scores["both"]["subtask_c"] > max(scores["image"]["subtask_c"], scores["text"]["subtask_c"]) + 0.1
