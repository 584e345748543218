"""The ensemble run's report: ``report.md`` (Tables 7 and 8 in the paper's form) and its plots.

Examples:
    >>> text = render_report({"n_test": 2, "n_train": 8, "table7": [{"name": "text", "scores": {"subtask_a": 0.4}}],
    ...                       "table8": {"sentiment": "lr"}})
    >>> "| sentiment | lr |" in text
    True
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from hf_memotion.io_utils import atomic_write_bytes
from hf_memotion.metrics.tables import format_table7
from hf_memotion.tasks import PROBLEM_NAMES, get_problem

__all__ = ["plot_scores", "render_report"]


def _save_figure(fig: Any, path: Path) -> None:
    """Write a figure as PNG atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def _label(name: str, width: int = 12) -> str:
    """A class name for an axis: words, wrapped at ``width`` characters, never cut."""
    return textwrap.fill(name.replace("_", " "), width=width)


def plot_scores(
    output: Path,
    rows: Sequence[Mapping[str, Any]],
    final: Mapping[str, np.ndarray],
    labels: Mapping[str, Any],
    model_name: str = "the modality ensemble",
) -> list[str]:
    """Write ``scores.png`` (held-out macro-F1 per model and problem) and ``confusion_matrices.png``.

    Args:
        output: The folder the PNGs go to.
        rows: Table 7's rows (``name`` and ``scores`` per problem).
        final: The probabilities the confusion matrices show, per problem (``(n, classes)``).
        labels: The held-out labels per problem.
        model_name: Whose predictions ``final`` holds (named in the figure's title).

    Returns:
        The file names written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    problems = [p for p in PROBLEM_NAMES if p in final]
    fig, ax = plt.subplots(figsize=(13, 4.6), layout="constrained")
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        ax.bar(
            np.arange(len(problems)) + i * width,
            [row["scores"].get(p, 0.0) for p in problems],
            width,
            label=row["name"],
        )
    ax.set_xticks(np.arange(len(problems)) + 0.4 - width / 2, [_label(p, 14) for p in problems])
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1 on the held-out split")
    ax.set_xlabel("problem")
    ax.set_title("Held-out macro-F1 per problem: each base model and each ensemble")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the bars, not on them
    _save_figure(fig, output / "scores.png")
    plt.close(fig)

    columns = 3
    grid = -(-len(problems) // columns)
    fig, axes = plt.subplots(grid, columns, figsize=(5.2 * columns, 4.6 * grid), layout="constrained", squeeze=False)
    count = len(next(iter(labels.values()))) if labels else 0
    fig.suptitle(f"Confusion matrices of {model_name} on the held-out split ({count} memes)", fontsize=14)
    for ax, problem in zip(axes.flat, problems, strict=False):
        names = get_problem(problem).labels
        matrix = confusion_matrix(labels[problem], final[problem].argmax(-1), labels=range(len(names)))
        # sklearn's display writes each count in black or white, whichever contrasts with its cell
        ConfusionMatrixDisplay(matrix, display_labels=[_label(n) for n in names]).plot(
            ax=ax, cmap="Blues", colorbar=False, values_format="d"
        )
        ax.set_title(problem.replace("_", " "), fontsize=12)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(axis="x", labelrotation=0, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(problems) :]:
        ax.axis("off")
    _save_figure(fig, output / "confusion_matrices.png")
    plt.close(fig)
    return ["scores.png", "confusion_matrices.png"]


def plot_reliability(
    output: Path, before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], labels: Mapping[str, Any]
) -> list[str]:
    """Write ``reliability.png``: per subtask, the answers' accuracy against their score, before and after calibration.

    The held-out answers of a subtask's problems are binned by score: a calibrated score lies on the diagonal; the
    bars show how many answers each bin holds.

    Returns:
        The file names written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_memotion.metrics.calibration import pooled_reliability
    from hf_memotion.tasks import SUBTASKS

    subtasks = {s: [p for p in members if p in after and p in labels] for s, members in SUBTASKS.items()}
    subtasks = {s: members for s, members in subtasks.items() if members}
    fig, axes = plt.subplots(1, len(subtasks), figsize=(5.2 * len(subtasks), 5.0), layout="constrained", squeeze=False)
    fig.suptitle("Reliability of the ensemble's scores on the held-out split (15 bins)", fontsize=14)
    for ax, (subtask, members) in zip(axes.flat, subtasks.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
        for when, found, style in (("before", before, "o--"), ("after", after, "s-")):
            confidence, accuracy, counts = pooled_reliability(found, labels, members)  # "after" last: its counts
            seen = counts > 0
            ax.plot(confidence[seen], accuracy[seen], style, label=f"{when} calibration")
        share = ax.twinx()
        share.bar(
            (np.arange(len(counts)) + 0.5) / len(counts), counts / counts.sum(), width=1 / len(counts), alpha=0.15
        )
        share.set_ylim(0, 1)
        share.set_ylabel("share of answers (after), bars", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("score of the answer")
        ax.set_ylabel("share of answers that are right")
        names = textwrap.fill(", ".join(m.replace("_", " ") for m in members), width=48)
        ax.set_title(f"subtask {subtask}\n{names}", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    _save_figure(fig, output / "reliability.png")
    plt.close(fig)
    return ["reliability.png"]


_SHARED = "trained once for subtasks B and C, with one meta-estimator chosen for both (Table 8)"
_SHARED_APART = (
    "trained once for subtasks B and C, its meta-estimator chosen per subtask (Table 8): another member predicts "
    "the two apart, so their inputs differ"
)


_SCORED = {
    "refit": "its refit model, scored as one model",
    "fold_mean": "the mean of its fold models",
    "mixed": "its refit models where they were refit, else the mean of their fold models",
}


def _single_rows(table7: Sequence[Mapping[str, Any]]) -> str:
    """What the single-model rows of Table 7 scored, said once if alike, else row by row."""
    scored = {
        row["name"]: row["scored"] for row in table7 if "scored" in row and not row["name"].endswith("(fold mean)")
    }
    kinds = set(scored.values())
    if len(kinds) <= 1:
        return f"each single-model row is {_SCORED[kinds.pop() if kinds else 'refit']}"
    return "the single-model rows are: " + "; ".join(f"{name}, {_SCORED[kind]}" for name, kind in scored.items())


def _table8_row(problem: str, method: str, taken_from: str | None) -> str:
    """One row of Table 8; a problem that takes another's meta-estimator says so (one choice, not two)."""
    if taken_from is None:
        return f"| {problem} | {method} |"
    return f"| {problem} | {method} (the {taken_from} choice: the same probabilities and labels, one choice for both) |"


def _calibration_section(calibration: Mapping[str, Any]) -> list[str]:
    """ECE per subtask before and after calibration, and per problem the map chosen and its log-loss."""
    lines = [
        "## Calibration",
        "",
        "The scores are calibrated probabilities: each problem's meta-estimator output goes through a map fitted on "
        "its out-of-fold output (never on these rows; `stacking.calibration`: under `auto`, `none` where a "
        "temperature did not lower the out-of-fold log-loss). Expected calibration error (15 bins, top label) on "
        "the held-out split:",
        "",
        "| subtask | ECE before | ECE after |",
        "|---|---:|---:|",
    ]
    for subtask, found in calibration.get("subtasks", {}).items():
        lines.append(f"| {subtask} | {found['ece_before']:.4f} | {found['ece_after']:.4f} |")
    lines += [
        "",
        "| problem | map | ECE before | ECE after | log-loss before | log-loss after |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for problem, found in calibration.get("problems", {}).items():
        lines.append(
            f"| {problem} | {calibration.get('methods', {}).get(problem, '?')} | {found['ece_before']:.4f} | "
            f"{found['ece_after']:.4f} | {found['log_loss_before']:.4f} | {found['log_loss_after']:.4f} |"
        )
    lines.append("")
    return lines


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _search_section(search: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The selection of every searched model, and what a pruned selection stopped early and when."""
    lines = [
        "## Hyperparameters selected per model",
        "",
        "| model | method | chosen | mean out-of-fold macro-F1 | candidates pruned | fold trainings | steps trained |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for name, chosen in search.items():
        lines.append(
            f"| {name} | {chosen['method']} | {_values(chosen['chosen'])} | {chosen['score']:.4f} | "
            f"{chosen.get('pruned', 0)} of {len(chosen['candidates'])} | {chosen.get('trainings', '?')} | "
            f"{chosen.get('train_steps', '?'):,} |"
        )
    pruned = [(name, c) for name, chosen in search.items() for c in chosen["candidates"] if c.get("state") == "pruned"]
    if pruned:
        lines += ["", "Pruned candidates (their finished folds are kept in the search folders):", ""]
        lines += ["| model | candidate | stopped at | score there | steps trained |", "|---|---|---|---:|---:|"]
        for name, candidate in pruned:
            where = candidate.get("pruned_at") or {}
            if "fold" in where:  # a pruned trial: fold and epoch, or the fold's end
                epoch = where.get("epoch")
                at = f"fold {int(where['fold']) + 1}, " + (f"epoch {epoch:g}" if epoch is not None else "its end")
            else:  # a rung of the halved grid: the first fold's epochs
                at = f"rung of {where.get('epochs', '?')} epochs (fold 1)"
            score = f"{where['value' if 'value' in where else 'score']:.4f}" if where else "?"
            lines.append(f"| {name} | {_values(candidate['values'])} | {at} | {score} | {candidate['train_steps']:,} |")
    lines.append("")
    return lines


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
        *[_table8_row(p, m, (report.get("table8_shared") or {}).get(p)) for p, m in report["table8"].items()],
        "",
    ]
    if report.get("decoding"):
        lines += [
            "## Reading subtasks B and C together",
            "",
            "Table 7 reads every problem by its own argmax, as the paper (`independent`). Then a meme can be "
            '"present" in B and "not" in C for the same emotion. `pipeline("meme-emotion")` and the Space read '
            "each emotion's B and C together by default (`joint`: the most probable consistent pair). The modality "
            "ensemble on the held-out split:",
            "",
            "| decoding | memes with a contradiction | B macro-F1 | C macro-F1 |",
            "|---|---:|---:|---:|",
        ]
        for decoding, found in report["decoding"].items():
            lines.append(
                f"| {decoding} | {found['contradictions']:.1%} | {found.get('subtask_b', float('nan')):.4f} | "
                f"{found.get('subtask_c', float('nan')):.4f} |"
            )
        lines.append("")
    protocol = report.get("protocol") or {}
    if protocol:
        dev = protocol.get("evaluation_split") == "dev"
        folds = protocol.get("test_time") == "fold_average"
        shared = protocol.get("share_motivational")
        trained = _SHARED if report.get("table8_shared") else _SHARED_APART
        lines += [
            "## Protocol",
            "",
            f"Scored on the {'dev split of the training release' if dev else 'held-out split'}; the ensembles read "
            f"the {'mean of the fold models' if folds else 'refit models'}' probabilities, and "
            f"{_single_rows(report['table7'])}; motivational {trained if shared else 'trained per subtask'}; "
            f"{protocol.get('trainings', '?')} trainings in all.",
            "",
        ]
    if report.get("calibration"):
        lines += _calibration_section(report["calibration"])
    if report.get("search"):
        lines += _search_section(report["search"])
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"
