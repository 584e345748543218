"""Label statistics of a loaded Memotion ``DatasetDict``, as data and as a readable table.

Examples:
    >>> from hf_memotion.data import label_counts, load_memotion, make_demo_data
    >>> ds = load_memotion(make_demo_data("/tmp/memotion_demo_stats", n_train=30, n_test=10))
    >>> sum(label_counts(ds["train"])["sentiment"].values())
    30
"""

from __future__ import annotations

from collections import Counter

import datasets

from hf_memotion.tasks import PROBLEMS

__all__ = ["format_statistics", "label_counts"]


def label_counts(split: datasets.Dataset) -> dict[str, dict[str, int]]:
    """Class counts per problem (label name -> count, every class listed) of one split."""
    out = {}
    for problem in PROBLEMS:
        if problem.name not in split.column_names:
            continue
        counts = Counter(split[problem.name])
        out[problem.name] = {label: counts.get(i, 0) for i, label in enumerate(problem.labels)}
    return out


def format_statistics(dataset: datasets.DatasetDict) -> str:
    """A plain-text report: rows, text lengths and class distribution (count and %) per split."""
    lines = []
    for split_name, split in dataset.items():
        lengths = [len(t.split()) for t in split["text"]]
        mean_words = sum(lengths) / max(len(lengths), 1)
        empty = sum(1 for n in lengths if n == 0)
        lines.append(f"[{split_name}] {split.num_rows} memes, {mean_words:.1f} words of text on average, {empty} empty")
        counts = label_counts(split)
        if not counts:
            lines.append("  (no labels)")
        for problem_name, per_class in counts.items():
            total = max(sum(per_class.values()), 1)
            cells = ", ".join(f"{label} {n} ({100 * n / total:.0f}%)" for label, n in per_class.items())
            lines.append(f"  {problem_name:<23} {cells}")
    return "\n".join(lines)
