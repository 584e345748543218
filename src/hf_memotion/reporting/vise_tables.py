"""Tables and plots of VisE downstream results, in the form of the paper's Tables 6/7 (scores) and 10-16 (grids).

Examples:
    >>> row = {"task": "cub", "backbone": "vise", "protocol": "linear", "metric": "accuracy", "splits": 1,
    ...        "validation_accuracy_mean": 61.5, "validation_accuracy_std": 0.0, "test_accuracy_mean": 60.25,
    ...        "test_accuracy_std": 0.0, "base_lr": 0.025, "weight_decay": 0.001, "s_lr": 3.1, "s_wd": 0.4}
    >>> print(results_table([row], "linear").splitlines()[2])
    | vise | 61.50 | 60.25 |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_memotion.io_utils import atomic_open

__all__ = ["hyperparameter_table", "plot_grids", "plot_results", "results_table"]

_TITLES = {"linear": "Linear evaluation (frozen backbone)", "finetune": "Fine-tuning"}


def _cell(row: Mapping[str, Any], part: str, name: str, reference: Mapping[str, Any] | None) -> str:
    mean, std = row.get(f"{part}_{name}_mean"), row.get(f"{part}_{name}_std")
    if mean is None:
        return "-"
    digits = 4 if name == "roc_auc" else 2
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if row.get("splits", 1) > 1 else "")
    if reference is not None and reference is not row and reference.get(f"{part}_{name}_mean") is not None:
        delta = mean - reference[f"{part}_{name}_mean"]
        text += f" ({'+' if delta >= 0 else '-'}{abs(delta):.{digits}f})"
    return text


def _columns(task_rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    if task_rows[0]["metric"] == "roc_auc":
        return [("test", "roc_auc", "ROC AUC"), ("test", "accuracy", "Accuracy")]
    return [("validation", "accuracy", "Val Accuracy"), ("test", "accuracy", "Test Accuracy")]


def results_table(rows: Sequence[Mapping[str, Any]], protocol: str, reference: str | None = None) -> str:
    """A Markdown table of one protocol (Table 6: linear, Table 7: fine-tuning): a row per backbone.

    Accuracy tasks give validation and test accuracy (mean ± std over random splits); ROC AUC tasks give test
    ROC AUC and accuracy. Each cell also shows its difference from its reference: ``reference`` for every row, else
    each row's own ``reference`` (the reference backbone of its group, as the paper's arrows compare each row with
    IN-Sup of the same backbone).

    Examples:
        >>> rows = [{"protocol": "linear", "task": "cub", "backbone": b, "metric": "accuracy", "reference": ref,
        ...          "validation_accuracy_mean": v, "test_accuracy_mean": v}
        ...         for b, ref, v in (("in-sup-r50", "in-sup-r50", 60.0), ("vise-r50", "in-sup-r50", 62.5),
        ...                           ("in-sup-x101", "in-sup-x101", 70.0), ("vise-x101", "in-sup-x101", 69.0))]
        >>> print(results_table(rows, "linear").splitlines()[-1])
        | vise-x101 | 69.00 (-1.00) | 69.00 (-1.00) |
    """
    rows = [r for r in rows if r["protocol"] == protocol]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    index = {(r["task"], r["backbone"]): r for r in rows}
    header, rule = ["Backbone"], ["---"]
    for task in tasks:
        for _, _, label in _columns([r for r in rows if r["task"] == task]):
            header.append(f"{task} {label}" if len(tasks) > 1 else label)
            rule.append("---:")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    for backbone in backbones:
        cells = [backbone]
        for task in tasks:
            row = index.get((task, backbone))
            own = reference or (row or {}).get("reference")
            ref = index.get((task, own)) if own else None
            for part, name, _ in _columns([r for r in rows if r["task"] == task]):
                cells.append(_cell(row, part, name, ref) if row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _choices(row: Mapping[str, Any], key: str, common: str) -> str:
    """The chosen value, or every split's choice in braces where they differ (as the paper's Table 10)."""
    values = row.get(key) or [row[common]]
    return f"{values[0]:g}" if len(set(values)) == 1 else "{" + ", ".join(f"{v:g}" for v in values) + "}"


def _sensitivity(row: Mapping[str, Any], name: str) -> str:
    text = f"{row[name]:.4g}"
    return text + (f" ± {row[f'{name}_std']:.2f}" if row.get("splits", 1) > 1 and f"{name}_std" in row else "")


def hyperparameter_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The chosen hyperparameters and their sensitivity per task, backbone and protocol (the paper's Tables 10-16).

    Columns: the schedule, batch size, chosen base LR and weight decay, ``S_lr`` and ``S_wd``; over random splits,
    every split's choice (in braces where they differ) and the mean ± std of the sensitivities.

    Examples:
        >>> row = {"task": "ue", "backbone": "vise", "protocol": "linear", "splits": 2, "batch_size": 32,
        ...        "schedule": "30 epochs", "base_lr": 0.025, "base_lrs": [0.025, 0.025], "weight_decay": 0.01,
        ...        "weight_decays": [0.01, 0.001], "s_lr": 2.5, "s_lr_std": 1.2, "s_wd": 0.3, "s_wd_std": 0.1}
        >>> print(hyperparameter_table([row]).splitlines()[2])
        | ue | 30 epochs | vise | linear | 32 | 0.025 | {0.01, 0.001} | 2.5 ± 1.20 | 0.3 ± 0.10 |
    """
    lines = [
        "| Task | Training schedule | Backbone | Protocol | Batch size | Base LR | WD | S_lr | S_wd |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r.get('schedule', '-')} | {r['backbone']} | {r['protocol']} | "
            f"{r.get('batch_size', '-')} | {_choices(r, 'base_lrs', 'base_lr')} | "
            f"{_choices(r, 'weight_decays', 'weight_decay')} | {_sensitivity(r, 's_lr')} | "
            f"{_sensitivity(r, 's_wd')} |"
        )
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb", encoding=None) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def plot_results(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Bar chart of each backbone's test score per task, one panel per protocol (error bars: std over splits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    fig, axes = plt.subplots(1, len(protocols), figsize=(5 * len(protocols), 3.8), squeeze=False)
    width = 0.8 / max(1, len(backbones))
    for ax, protocol in zip(axes[0], protocols, strict=True):
        for b, backbone in enumerate(backbones):
            means, stds = [], []
            for task in tasks:
                row = next(
                    (r for r in rows if (r["task"], r["backbone"], r["protocol"]) == (task, backbone, protocol)), None
                )
                scale = 100.0 if row and row["metric"] == "roc_auc" else 1.0  # ROC AUC drawn in percent
                means.append(row[f"test_{row['metric']}_mean"] * scale if row else np.nan)
                stds.append(row[f"test_{row['metric']}_std"] * scale if row else 0.0)
            ax.bar(np.arange(len(tasks)) + b * width, means, width, yerr=stds, label=backbone, capsize=3)
        ax.set_xticks(np.arange(len(tasks)) + width * (len(backbones) - 1) / 2)
        ax.set_xticklabels(tasks, rotation=15)
        ax.set(ylabel="test accuracy / ROC AUC (%)", title=_TITLES.get(protocol, protocol), ylim=(0, 100))
        ax.legend(fontsize=8)
    fig.tight_layout()
    target = Path(path)
    _save(fig, target)
    return target


def plot_grids(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Heat maps of the validation score over base LR x weight decay (first split), one per result row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = min(4, len(rows))
    lines = -(-len(rows) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.4 * columns, 3.0 * lines), squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        grid = row["per_split"][0]["grid"]
        lrs = sorted({g["base_lr"] for g in grid}, reverse=True)
        wds = sorted({g["weight_decay"] for g in grid}, reverse=True)
        values = np.full((len(wds), len(lrs)), np.nan)
        for g in grid:
            values[wds.index(g["weight_decay"]), lrs.index(g["base_lr"])] = g["validation"][row["metric"]]
        image = ax.imshow(values, cmap="viridis")
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="white", fontsize=8)
        ax.set_xticks(range(len(lrs)), [f"{x:g}" for x in lrs], fontsize=7)
        ax.set_yticks(range(len(wds)), [f"{x:g}" for x in wds], fontsize=7)
        ax.set(xlabel="base LR", ylabel="weight decay")
        ax.set_title(f"{row['task']} / {row['backbone']} / {row['protocol']}", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    target = Path(path)
    _save(fig, target)
    return target
