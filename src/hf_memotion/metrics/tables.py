"""Scores in the form of the Memotion paper's tables (Markdown), shared by the report and the model cards.

Example:
    >>> print(format_table7([{"name": "text", "scores": {"subtask_a": 0.35}}]).splitlines()[2][:24])
    | text | 0.350 | - | - |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hf_memotion.tasks import EMOTIONS

__all__ = ["format_table7"]


def format_table7(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table in the form of the paper's Table 7 (macro-F1; emotions in the official hsom order)."""
    heads = ["model", "A", "B ave.", *[f"B {e[:4]}." for e in EMOTIONS], "C ave.", *[f"C {e[:4]}." for e in EMOTIONS]]
    keys = ["subtask_a", "subtask_b", *EMOTIONS, "subtask_c", *[f"{e}_intensity" for e in EMOTIONS]]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [f"{row['scores'][k]:.3f}" if k in row["scores"] else "-" for k in keys]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
