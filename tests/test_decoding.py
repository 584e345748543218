"""Subtasks B and C read together: no meme is "present" and "not" at once, and the paper's reading stays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hf_memotion.decoding import DECODINGS, compare_decodings, contradictions, decode, joint_pair
from hf_memotion.tasks import EMOTIONS, PROBLEM_NAMES, get_problem


def _random_final(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {p: rng.dirichlet(np.ones(get_problem(p).num_labels), n) for p in PROBLEM_NAMES}


def test_joint_takes_the_most_probable_consistent_pair():
    presence = np.array([[0.49, 0.51], [0.2, 0.8], [0.6, 0.4]])
    grades = np.array([[0.4, 0.3, 0.2, 0.1], [0.9, 0.05, 0.03, 0.02], [0.1, 0.1, 0.7, 0.1]])
    chosen, grade = joint_pair(presence, grades)
    # 0.49*0.4 > 0.51*0.3: absent; 0.2*0.9 > 0.8*0.05: absent; 0.4*0.7 > 0.6*0.1: present, grade 2
    assert chosen.tolist() == [0, 0, 1] and grade.tolist() == [0, 0, 2]
    for row in range(3):  # brute force over the consistent pairs
        pairs = [(0, 0)] + [(1, g) for g in range(1, 4)]
        best = max(pairs, key=lambda pair: presence[row, pair[0]] * grades[row, pair[1]])
        assert (chosen[row], grade[row]) == best


def test_joint_never_contradicts_and_independent_is_each_argmax():
    final = _random_final(500)
    independent, joint = decode(final, "independent"), decode(final, "joint")
    assert all(np.array_equal(independent[p], final[p].argmax(-1)) for p in PROBLEM_NAMES)
    assert contradictions(independent) > 0.1 and contradictions(joint) == 0.0
    assert np.array_equal(joint["sentiment"], independent["sentiment"])  # A is not touched
    with pytest.raises(ValueError, match="decoding must be one of"):
        decode(final, "greedy")


def test_the_report_compares_both_decodings():
    final = _random_final(300, seed=1)
    labels = {p: v.argmax(-1) for p, v in _random_final(300, seed=2).items()}
    found = compare_decodings(final, labels)
    assert set(found) == set(DECODINGS) and found["joint"]["contradictions"] == 0.0
    assert 0 <= found["independent"]["subtask_b"] <= 1 and 0 <= found["joint"]["subtask_c"] <= 1


def test_the_pipeline_reads_b_and_c_together_unless_asked_otherwise():
    from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
    from hf_memotion.pipelines import MemeEmotionPipeline

    pipe = MemeEmotionPipeline(model=random_ensemble(ENSEMBLE_SIZES["demo"]), task="meme-emotion")
    memes = [{"image": Image.new("RGB", (48, 48), (i * 20, 90, 30)), "text": f"meme number {i}"} for i in range(12)]
    for answer in pipe(memes, batch_size=4, ten_crop=False):
        for emotion in EMOTIONS:
            entry = answer["emotions"][emotion]
            assert entry["present"] == (entry["intensity"] != get_problem(f"{emotion}_intensity").labels[0])
    for answer in pipe(memes, batch_size=4, ten_crop=False, decoding="independent"):
        for entry in answer["emotions"].values():
            grades = entry["intensity_scores"]
            assert entry["present"] == (entry["score"] > 0.5) and entry["intensity"] == max(grades, key=grades.get)
    with pytest.raises(ValueError, match="decoding must be one of"):
        pipe(memes[0], decoding="greedy")
