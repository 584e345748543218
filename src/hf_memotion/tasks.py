"""The nine Memotion classification problems: the single source of truth for labels.

SemEval-2020 Task 8 (Memotion 1.0) has three subtasks built from five annotated columns of the
release's ``labels.csv``:

* subtask A, ``sentiment``: three classes (negative, neutral, positive) from ``overall_sentiment``;
* subtask B, four binary problems (``humour``, ``sarcasm``, ``offensive``, ``motivational``):
  0 where the release value is the ``not_*`` one, else 1;
* subtask C, four intensity problems (``humour_intensity`` ...): the release's own grades, 0-3
  (0-1 for motivational).

Everything else in the package (the data loader, the models' heads, the metric, the submission
file) reads label names, release strings and official codes from here.

Examples:
    >>> from hf_memotion.tasks import PROBLEMS, encode_submission, get_problem
    >>> [p.name for p in PROBLEMS][:3]
    ['sentiment', 'humour', 'sarcasm']
    >>> get_problem("humour_intensity").label_from_release("very_funny")
    2
    >>> encode_submission({"sentiment": 2, "humour": 1, "sarcasm": 1, "offensive": 0,
    ...                    "motivational": 1, "humour_intensity": 2, "sarcasm_intensity": 3,
    ...                    "offensive_intensity": 0, "motivational_intensity": 1})
    '1_1101_2301'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EMOTIONS",
    "PROBLEMS",
    "PROBLEM_NAMES",
    "RELEASE_COLUMNS",
    "RELEASE_LABELS",
    "SUBTASKS",
    "Problem",
    "decode_submission",
    "encode_submission",
    "get_problem",
    "to_label_columns",
]

#: The four emotions of subtasks B and C, in the official order of the ``hsom`` digits.
EMOTIONS: tuple[str, ...] = ("humour", "sarcasm", "offensive", "motivational")

#: Every label string of the training release's five annotated columns (in file order), in grade order.
RELEASE_LABELS: dict[str, tuple[str, ...]] = {
    "humour": ("not_funny", "funny", "very_funny", "hilarious"),
    "sarcasm": ("not_sarcastic", "general", "twisted_meaning", "very_twisted"),
    "offensive": ("not_offensive", "slight", "very_offensive", "hateful_offensive"),
    "motivational": ("not_motivational", "motivational"),
    "overall_sentiment": ("very_negative", "negative", "neutral", "positive", "very_positive"),
}

#: The annotated columns of ``labels.csv`` in the training release, in the release's column order.
RELEASE_COLUMNS: tuple[str, ...] = tuple(RELEASE_LABELS)


@dataclass(frozen=True)
class Problem:
    """One classification problem of the Memotion task.

    Attributes:
        name: Column name used in datasets, model heads and metrics (e.g. ``"sarcasm_intensity"``).
        subtask: ``"A"``, ``"B"`` or ``"C"``.
        emotion: The emotion for B and C problems, ``None`` for sentiment.
        labels: Class names, indexed by the class id used everywhere in the package.
        release_column: The ``labels.csv`` column the labels are derived from.
        release_map: Release string -> class id.
        codes: The official code of each class id in a submission line (A: -1, 0, 1; B/C: the id).

    Examples:
        >>> p = get_problem("sentiment")
        >>> p.labels, p.label_from_release("very_positive"), p.codes
        (('negative', 'neutral', 'positive'), 2, (-1, 0, 1))
    """

    name: str
    subtask: str
    emotion: str | None
    labels: tuple[str, ...]
    release_column: str
    release_map: Mapping[str, int] = field(repr=False)
    codes: tuple[int, ...]

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> class name, as transformers configs hold it."""
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        """Class name -> class id."""
        return {name: i for i, name in enumerate(self.labels)}

    def label_from_release(self, value: str) -> int:
        """Map a release label string (e.g. ``"twisted_meaning"``) to this problem's class id.

        Surrounding white space and letter case are ignored.

        Raises:
            ValueError: If the string is not one of the release's strings for this column.
        """
        key = str(value).strip().lower()
        if key not in self.release_map:
            allowed = ", ".join(RELEASE_LABELS[self.release_column])
            raise ValueError(f"unknown {self.release_column!r} label {value!r}; expected one of: {allowed}")
        return self.release_map[key]

    def label_from_code(self, code: int) -> int:
        """Map an official submission code (A: -1/0/1, B/C: the digit) to the class id."""
        try:
            return self.codes.index(int(code))
        except ValueError:
            raise ValueError(f"invalid code {code!r} for {self.name}; expected one of {list(self.codes)}") from None


def _build_problems() -> tuple[Problem, ...]:
    sentiment_map = {"very_negative": 0, "negative": 0, "neutral": 1, "positive": 2, "very_positive": 2}
    problems = [
        Problem(
            name="sentiment",
            subtask="A",
            emotion=None,
            labels=("negative", "neutral", "positive"),
            release_column="overall_sentiment",
            release_map=sentiment_map,
            codes=(-1, 0, 1),
        )
    ]
    present_names = {
        "humour": ("not_funny", "funny"),
        "sarcasm": ("not_sarcastic", "sarcastic"),
        "offensive": ("not_offensive", "offensive"),
        "motivational": ("not_motivational", "motivational"),
    }
    for emotion in EMOTIONS:
        grades = RELEASE_LABELS[emotion]
        problems.append(
            Problem(
                name=emotion,
                subtask="B",
                emotion=emotion,
                labels=present_names[emotion],
                release_column=emotion,
                release_map={s: int(i > 0) for i, s in enumerate(grades)},
                codes=(0, 1),
            )
        )
    for emotion in EMOTIONS:
        grades = RELEASE_LABELS[emotion]
        problems.append(
            Problem(
                name=f"{emotion}_intensity",
                subtask="C",
                emotion=emotion,
                labels=grades,
                release_column=emotion,
                release_map={s: i for i, s in enumerate(grades)},
                codes=tuple(range(len(grades))),
            )
        )
    return tuple(problems)


#: All nine problems in the official order: A, then B (h, s, o, m), then C (h, s, o, m).
PROBLEMS: tuple[Problem, ...] = _build_problems()
#: Their names, in the same order.
PROBLEM_NAMES: tuple[str, ...] = tuple(p.name for p in PROBLEMS)
#: Problem names per subtask.
SUBTASKS: dict[str, tuple[str, ...]] = {s: tuple(p.name for p in PROBLEMS if p.subtask == s) for s in "ABC"}

_BY_NAME = {p.name: p for p in PROBLEMS}


def get_problem(name: str) -> Problem:
    """Return the problem called ``name``.

    Raises:
        KeyError: With the list of valid names, if ``name`` is not one.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; valid problems: {', '.join(PROBLEM_NAMES)}") from None


def encode_submission(labels: Mapping[str, int]) -> str:
    """Encode one meme's nine class ids as an official answer line, ``"{A}_{hsom}_{hsom}"``.

    Args:
        labels: Class id per problem name; all nine problems are required.

    Returns:
        The line, e.g. ``"1_1101_2301"``.
    """
    missing = [n for n in PROBLEM_NAMES if n not in labels]
    if missing:
        raise ValueError(f"a submission line needs all nine problems; missing: {', '.join(missing)}")
    codes = []
    for p in PROBLEMS:
        class_id = int(labels[p.name])
        if not 0 <= class_id < p.num_labels:
            raise ValueError(f"class id {class_id} out of range for {p.name} ({p.num_labels} classes)")
        codes.append(p.codes[class_id])
    return f"{codes[0]}_{''.join(map(str, codes[1:5]))}_{''.join(map(str, codes[5:9]))}"


def decode_submission(line: str) -> dict[str, int]:
    """Decode an official ``"{A}_{hsom}_{hsom}"`` label string into class ids per problem.

    Args:
        line: E.g. ``"1_1101_2301"`` or ``"-1_0000_0000"``.

    Returns:
        Class id per problem name, in :data:`PROBLEM_NAMES` order.

    Raises:
        ValueError: Naming the string and what is wrong with it.
    """
    text = str(line).strip()
    parts = text.split("_")
    if len(parts) != 3 or len(parts[1]) != 4 or len(parts[2]) != 4 or not (parts[1] + parts[2]).isdigit():
        raise ValueError(f"malformed label string {line!r}; expected '{{A}}_{{hsom}}_{{hsom}}' like '1_1101_2301'")
    codes = [parts[0], *parts[1], *parts[2]]
    out = {}
    for p, code in zip(PROBLEMS, codes, strict=True):
        try:
            out[p.name] = p.label_from_code(int(code))
        except ValueError as err:
            raise ValueError(f"malformed label string {line!r}: {err}") from None
    return out


def to_label_columns(labels: Mapping[str, Iterable[int]] | Iterable[Mapping[str, int] | str]) -> dict[str, list[int]]:
    """Bring labels of any accepted shape to one list of class ids per problem.

    Args:
        labels: A mapping problem name -> class ids (any subset of the problems), a sequence of
            dicts problem name -> class id, or a sequence of ``"{A}_{hsom}_{hsom}"`` strings.

    Returns:
        Problem name -> list of class ids, in :data:`PROBLEM_NAMES` order.

    Examples:
        >>> to_label_columns(["1_1101_2301", "-1_0000_0000"])["sentiment"]
        [2, 0]
    """
    if isinstance(labels, Mapping):
        unknown = [name for name in labels if name not in _BY_NAME]
        if unknown:
            raise KeyError(
                f"unknown problem(s) {', '.join(map(str, unknown))}; valid problems: {', '.join(PROBLEM_NAMES)}"
            )
        columns = {name: [int(v) for v in labels[name]] for name in PROBLEM_NAMES if name in labels}
    else:
        rows: list[Any] = [decode_submission(r) if isinstance(r, str) else r for r in labels]
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(f"item {i} is a {type(row).__name__}; expected a label string or a dict per problem")
        names = [n for n in PROBLEM_NAMES if rows and n in rows[0]]
        columns = {}
        for name in names:
            try:
                columns[name] = [int(row[name]) for row in rows]
            except KeyError:
                raise ValueError(f"every item needs the same problems; some lack {name!r}") from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"label columns have different lengths: { {n: len(v) for n, v in columns.items()} }")
    for name, values in columns.items():
        n_classes = _BY_NAME[name].num_labels
        bad = [v for v in values if not 0 <= v < n_classes]
        if bad:
            raise ValueError(f"{name}: class id(s) {sorted(set(bad))[:5]} out of range 0..{n_classes - 1}")
    return columns
