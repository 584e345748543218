"""The official Memotion scores as plain Python: macro-F1 per problem and per subtask.

Subtask A is the macro-F1 of the three sentiment classes; B and C are the mean of the four
emotions' macro-F1 (binary for B, intensity grades for C). Macro-F1 is scikit-learn's
``f1_score(average="macro")``, over the classes that occur in the references or predictions, as
in the task's scorer.

Examples:
    >>> from hf_memotion.metrics import memotion_scores
    >>> scores = memotion_scores(["1_1101_2301", "0_0000_0000"], ["1_1101_2301", "-1_0000_0000"])
    >>> scores["humour"], round(scores["subtask_a"], 3)
    (1.0, 0.333)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sklearn.metrics import f1_score

from hf_memotion.tasks import SUBTASKS, to_label_columns

__all__ = ["memotion_scores"]

LabelsLike = Mapping[str, Iterable[int]] | Iterable[Mapping[str, int] | str]


def memotion_scores(predictions: LabelsLike, references: LabelsLike) -> dict[str, float]:
    """Macro-F1 of every problem present in both, and of every subtask whose problems are all present.

    Args:
        predictions: Class ids per problem (mapping problem -> ids), a sequence of dicts, or a
            sequence of ``A_hsom_hsom`` answer lines.
        references: The gold labels, in any of the same shapes.

    Returns:
        ``{"subtask_a": .., "subtask_b": .., "subtask_c": .., "sentiment": .., "humour": .., ...,
        "motivational_intensity": ..}`` (subtask keys only where all their problems are scored).

    Raises:
        ValueError: If the two share no problem or differ in length.
    """
    pred, ref = to_label_columns(predictions), to_label_columns(references)
    shared = [name for name in ref if name in pred]
    if not shared:
        raise ValueError(
            f"predictions ({', '.join(pred) or 'none'}) and references ({', '.join(ref)}) share no problem"
        )
    scores: dict[str, float] = {}
    for name in shared:
        if len(pred[name]) != len(ref[name]):
            raise ValueError(f"{name}: {len(pred[name])} predictions for {len(ref[name])} references")
        if not ref[name]:
            raise ValueError("no examples to score")
        scores[name] = float(f1_score(ref[name], pred[name], average="macro", zero_division=0))
    subtask_scores = {}
    for subtask, names in SUBTASKS.items():
        if all(n in scores for n in names):
            subtask_scores[f"subtask_{subtask.lower()}"] = sum(scores[n] for n in names) / len(names)
    return {**subtask_scores, **scores}
