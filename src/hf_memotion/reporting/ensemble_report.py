"""The ensemble run's report: ``report.md`` (Tables 7 and 8 in the paper's form) and its plots.

Examples:
    >>> text = render_report({"n_test": 2, "n_train": 8, "table7": [{"name": "text", "scores": {"subtask_a": 0.4}}],
    ...                       "table8": {"sentiment": "lr"}})
    >>> "| sentiment | lr |" in text
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from hf_memotion.metrics.tables import format_table7
from hf_memotion.tasks import PROBLEM_NAMES, get_problem

__all__ = ["plot_scores", "render_report"]


def plot_scores(output: Path, rows: Sequence[Mapping[str, Any]], final: Mapping[str, np.ndarray], labels) -> list[str]:
    """Write ``scores.png`` (held-out macro-F1 per model and problem) and ``confusion_matrices.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(12, 4))
    problems = [p for p in PROBLEM_NAMES if p in final]
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        ax.bar(
            np.arange(len(problems)) + i * width,
            [row["scores"].get(p, 0.0) for p in problems],
            width,
            label=row["name"],
        )
    ax.set_xticks(np.arange(len(problems)) + 0.4 - width / 2, problems, rotation=30, ha="right")
    ax.set_ylabel("macro-F1 (held-out)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(output / "scores.png", dpi=100)
    plt.close(fig)
    written.append("scores.png")
    fig, axes = plt.subplots(1, len(problems), figsize=(3.2 * len(problems), 3.2))
    for ax, problem in zip(np.atleast_1d(axes), problems, strict=True):
        names = get_problem(problem).labels
        matrix = confusion_matrix(labels[problem], final[problem].argmax(-1), labels=range(len(names)))
        ax.imshow(matrix, cmap="Blues")
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(c, r, int(value), ha="center", va="center", fontsize=7)
        ax.set_title(problem, fontsize=8)
        ax.set_xticks(range(len(names)), [n[:8] for n in names], rotation=45, fontsize=6)
        ax.set_yticks(range(len(names)), [n[:8] for n in names], fontsize=6)
    fig.tight_layout()
    fig.savefig(output / "confusion_matrices.png", dpi=100)
    plt.close(fig)
    written.append("confusion_matrices.png")
    return written


def render_report(report: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """``report.md``: Table 7 and Table 8 in the paper's form, plus the plots."""
    lines = [
        "# Modality ensemble: results",
        "",
        f"Held-out evaluation on {report['n_test']} memes; base models and meta-estimators trained on "
        f"{report['n_train']} memes (meta-estimators on out-of-fold probabilities only).",
        "",
        "## Macro-F1 per subtask and emotion (the form of Table 7 of the Memotion paper)",
        "",
        format_table7(report["table7"], (report.get("protocol") or {}).get("table7_columns", "release")),
        "",
        "## Meta-estimator chosen per problem (Table 8)",
        "",
        "| problem | method |",
        "|---|---|",
        *[f"| {p} | {m} |" for p, m in report["table8"].items()],
        "",
    ]
    protocol = report.get("protocol") or {}
    if protocol:
        dev = protocol.get("evaluation_split") == "dev"
        folds = protocol.get("test_time") == "fold_average"
        shared = protocol.get("share_motivational")
        lines += [
            "## Protocol",
            "",
            f"Scored on the {'dev split of the training release' if dev else 'held-out split'} with the "
            f"{'mean of the fold models' if folds else 'refit models'}' probabilities; motivational "
            f"{'trained once for subtasks B and C' if shared else 'trained per subtask'}; "
            f"{protocol.get('trainings', '?')} trainings in all.",
            "",
        ]
    if report.get("search"):
        lines += [
            "## Hyperparameters selected per model",
            "",
            "| model | method | chosen | mean out-of-fold macro-F1 |",
            "|---|---|---|---|",
        ]
        for name, chosen in report["search"].items():
            values = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen["chosen"].items()
            )
            lines.append(f"| {name} | {chosen['method']} | {values} | {chosen['score']:.4f} |")
        lines.append("")
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"
