"""Reading answers off the ensemble's probabilities: each problem on its own, or subtasks B and C together.

The paper decodes every problem by its own argmax (``"independent"``). Then a meme can be humour "present" at 51%
with intensity "not_funny": subtask B says yes, subtask C says no, and a person reads that as a bug. ``"joint"``
decides each emotion's presence (B) and intensity (C) together: of the consistent pairs (absent with C's "not"
grade, or present with one of C's other grades), the one whose probabilities' product is largest. Probabilities
are not changed, only which class is read; an emotion lacking either problem keeps its argmax.

``"joint"`` is the default of ``pipeline("meme-emotion")`` and the Space; ``"independent"`` reproduces the paper
(the training report scores both).

Examples:
    >>> import numpy as np
    >>> final = {"humour": np.array([[0.49, 0.51]]), "humour_intensity": np.array([[0.40, 0.30, 0.20, 0.10]])}
    >>> decode(final, "independent")  # present, yet "not_funny"
    {'humour': array([1]), 'humour_intensity': array([0])}
    >>> decode(final, "joint")  # 0.49 x 0.40 beats 0.51 x 0.30: absent and not funny
    {'humour': array([0]), 'humour_intensity': array([0])}
    >>> contradictions(decode(final, "independent"))
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hf_memotion.tasks import EMOTIONS

__all__ = ["DECODINGS", "compare_decodings", "contradictions", "decode", "joint_pair", "joint_weights"]

#: How answers are read: each problem's argmax (the paper), or each emotion's B and C together.
DECODINGS = ("independent", "joint")


def joint_pair(presence: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most probable consistent (presence, intensity) class pair of each row.

    Args:
        presence: ``(n, 2)`` probabilities of absent / present.
        intensity: ``(n, k)`` probabilities of the grades, grade 0 being the "not" one.

    Returns:
        ``(presence class, intensity class)``, each ``(n,)``.
    """
    presence, intensity = np.atleast_2d(presence), np.atleast_2d(intensity)
    grade = 1 + intensity[:, 1:].argmax(-1)
    present = presence[:, 1] * intensity[np.arange(len(grade)), grade]
    absent = presence[:, 0] * intensity[:, 0]
    chosen = present > absent
    return chosen.astype(np.int64), np.where(chosen, grade, 0).astype(np.int64)


def joint_weights(present: float, grades: Sequence[float]) -> np.ndarray:
    """One meme's intensity grades weighed by its presence: absent for grade 0, present for the others, normalised.

    The largest weight is :func:`joint_pair`'s grade (what a display of the joint answer shows).

    Examples:
        >>> joint_weights(0.51, [0.4, 0.3, 0.2, 0.1]).round(3).tolist()  # 0.49 x 0.4 is the largest: "not"
        [0.39, 0.305, 0.203, 0.102]
    """
    grades = np.asarray(grades, dtype=np.float64)
    weights = grades * np.where(np.arange(len(grades)) == 0, 1.0 - present, present)
    return weights / (weights.sum() or 1.0)


def decode(final: Mapping[str, np.ndarray], decoding: str = "joint") -> dict[str, np.ndarray]:
    """Class ids per problem from ``(n, classes)`` probabilities, by ``decoding`` (one of :data:`DECODINGS`).

    Raises:
        ValueError: For a decoding that is not one of :data:`DECODINGS`.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
    labels = {problem: np.atleast_2d(values).argmax(-1) for problem, values in final.items()}
    if decoding == "joint":
        for emotion in EMOTIONS:
            grades = f"{emotion}_intensity"
            if emotion in final and grades in final:
                labels[emotion], labels[grades] = joint_pair(final[emotion], final[grades])
    return labels


def contradictions(labels: Mapping[str, np.ndarray]) -> float:
    """The share of memes with at least one emotion whose B answer and C answer disagree (present vs "not").

    Memes are rows; emotions lacking either problem are not counted.
    """
    pairs = [
        (np.atleast_1d(labels[e]), np.atleast_1d(labels[f"{e}_intensity"]))
        for e in EMOTIONS
        if e in labels and f"{e}_intensity" in labels
    ]
    if not pairs:
        return 0.0
    disagree = np.zeros(len(pairs[0][0]), dtype=bool)
    for presence, grade in pairs:
        disagree |= (presence == 1) != (grade > 0)
    return float(disagree.mean()) if len(disagree) else 0.0


def compare_decodings(final: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Per decoding: the share of memes whose B and C answers contradict, and subtasks B's and C's macro-F1.

    Args:
        final: The ensemble's ``(n, classes)`` probabilities per problem.
        labels: The true class ids per problem.

    Returns:
        ``{decoding: {"contradictions": share, "subtask_b": macro-F1, "subtask_c": macro-F1}}``.
    """
    from hf_memotion.metrics import memotion_scores

    shared = [p for p in final if p in labels]
    out = {}
    for decoding in DECODINGS:
        decided = decode({p: final[p] for p in shared}, decoding)
        scores = memotion_scores(decided, {p: np.asarray(labels[p]) for p in shared})
        out[decoding] = {
            "contradictions": contradictions(decided),
            **{k: scores[k] for k in ("subtask_b", "subtask_c") if k in scores},
        }
    return out
