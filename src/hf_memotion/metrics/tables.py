"""Scores in the form of the Memotion paper's tables (Markdown), shared by the report and the model cards.

Examples:
    >>> print(format_table7([{"name": "text", "scores": {"subtask_a": 0.35}}]).splitlines()[2][:24])
    | text | 0.350 | - | - |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hf_memotion.tasks import EMOTIONS

__all__ = ["PAPER_EMOTION_ORDER", "format_table7"]


#: The order the paper's Table 7 prints the emotions in (humour, offensive, sarcasm, motivational).
PAPER_EMOTION_ORDER: tuple[str, ...] = ("humour", "offensive", "sarcasm", "motivational")


def format_table7(rows: Sequence[Mapping[str, Any]], columns: str = "release") -> str:
    """A Markdown table in the form of the paper's Table 7 (macro-F1).

    Args:
        rows: ``{"name", "scores"}`` per row (scores keyed ``subtask_a``, ``humour``, ``humour_intensity``...).
        columns: Emotion order: ``"release"`` (humour, sarcasm, offensive, motivational: the release's and the
            submission's hsom order) or ``"paper"`` (humour, offensive, sarcasm, motivational: as the paper prints).

    Examples:
        >>> format_table7([], columns="paper").splitlines()[0][:60]
        '| model | A | B ave. | B humo. | B offe. | B sarc. | B moti.'
    """
    if columns not in ("release", "paper"):
        raise ValueError(f"columns must be 'release' or 'paper', got {columns!r}")
    emotions = PAPER_EMOTION_ORDER if columns == "paper" else EMOTIONS
    heads = ["model", "A", "B ave.", *[f"B {e[:4]}." for e in emotions], "C ave.", *[f"C {e[:4]}." for e in emotions]]
    keys = ["subtask_a", "subtask_b", *emotions, "subtask_c", *[f"{e}_intensity" for e in emotions]]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [f"{row['scores'][k]:.3f}" if k in row["scores"] else "-" for k in keys]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
