"""What the text, vision and VisE classifiers share: problem settings, one head per problem, the loss.

A classifier predicts one problem (the paper's setting: one model per emotion) or several from one
forward pass. Its logits for all problems are concatenated into one ``(batch, total_labels)``
tensor, so ``Trainer``, pipelines and ``nested_concat`` treat it like any classifier's output;
:func:`split_logits` (or ``output.problem_logits``) gives them per problem. Labels are
``(batch,)`` for one problem or ``(batch, n_problems)`` for several, ``-100`` meaning "no label".

Example:
    >>> import torch
    >>> from hf_memotion.models.heads import ProblemHeads, resolve_problem_labels
    >>> labels = resolve_problem_labels(["sentiment", "humour"])
    >>> heads = ProblemHeads(8, labels)
    >>> logits = heads(torch.randn(4, 8))
    >>> logits.shape, heads.loss(logits, torch.tensor([[0, 1], [2, 0], [1, -100], [0, 1]])).ndim
    (torch.Size([4, 5]), 0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from hf_memotion.tasks import get_problem

__all__ = [
    "MemotionClassifierOutput",
    "ProblemHeads",
    "concatenated_id2label",
    "drop_derived_label_fields",
    "finish_problem_config",
    "resolve_problem_labels",
    "split_logits",
]


def resolve_problem_labels(
    problems: Sequence[str], problem_labels: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """Label names per problem: given ones win, Memotion problems default to :mod:`hf_memotion.tasks`.

    Raises:
        ValueError: For an empty or repeated problem list, or a problem with fewer than two labels.
        KeyError: For a problem that is neither a Memotion problem nor given labels.
    """
    if isinstance(problems, str):
        problems = [problems]
    if not problems:
        raise ValueError("a classifier needs at least one problem, e.g. problems=['sentiment']")
    if len(set(problems)) != len(problems):
        raise ValueError(f"problems are listed more than once: {list(problems)}")
    given = dict(problem_labels or {})
    out = {}
    for name in problems:
        labels = list(given[name]) if name in given else list(get_problem(name).labels)
        if len(labels) < 2:
            raise ValueError(f"problem {name!r} needs at least two labels, got {labels}")
        out[name] = labels
    return out


def concatenated_id2label(problem_labels: Mapping[str, Sequence[str]]) -> dict[int, str]:
    """``id2label`` of the concatenated logits: plain label names for one problem, ``problem:label`` for several."""
    if len(problem_labels) == 1:
        return dict(enumerate(next(iter(problem_labels.values()))))
    names = [f"{problem}:{label}" for problem, labels in problem_labels.items() for label in labels]
    return dict(enumerate(names))


def drop_derived_label_fields(config, kwargs: dict) -> None:
    """Forget ``id2label``/``label2id``/``num_labels`` given to a classifier config: they follow from its problems.

    Call it first in ``__post_init__`` (before ``PretrainedConfig.__post_init__``), then
    :func:`finish_problem_config` at the end.
    """
    for stale in ("id2label", "label2id", "num_labels"):
        kwargs.pop(stale, None)
    config.id2label = None
    config.label2id = None


def finish_problem_config(config) -> None:
    """Fill a classifier config's problem fields: ``problems``, ``problem_labels``, ``id2label``, ``label2id``.

    Shared by the text, vision and VisE configs (call it at the end of ``__post_init__``).
    """
    config.problems = list(config.problems or ["sentiment"])
    config.problem_labels = resolve_problem_labels(config.problems, config.problem_labels)
    if config.class_weights is not None:
        unknown = [p for p in config.class_weights if p not in config.problem_labels]
        if unknown:
            raise ValueError(f"class_weights given for problems this model does not predict: {unknown}")
    config.id2label = concatenated_id2label(config.problem_labels)
    config.label2id = {label: i for i, label in config.id2label.items()}


def split_logits(logits: torch.Tensor, problem_labels: Mapping[str, Sequence[str]]) -> dict[str, torch.Tensor]:
    """Split concatenated logits ``(..., total_labels)`` into one tensor per problem (works on numpy too)."""
    out, start = {}, 0
    for name, labels in problem_labels.items():
        out[name] = logits[..., start : start + len(labels)]
        start += len(labels)
    if start != logits.shape[-1]:
        raise ValueError(f"logits have {logits.shape[-1]} columns but the problems have {start} labels in all")
    return out


@dataclass
class MemotionClassifierOutput(ModelOutput):
    """Output of every hf-memotion classifier.

    Attributes:
        loss: Sum over problems of the class-weighted cross-entropy, when labels were given.
        logits: ``(batch, total_labels)``: every problem's logits, concatenated in config order.
        problem_logits: The same logits per problem name.
        hidden_states: The pooled representation fed to the heads, ``(batch, hidden)``.

    Example:
        >>> MemotionClassifierOutput(logits=torch.zeros(1, 3)).logits.shape
        torch.Size([1, 3])
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    problem_logits: dict[str, torch.FloatTensor] | None = None
    hidden_states: torch.FloatTensor | None = None


class ProblemHeads(nn.Module):
    """One linear classifier per problem over a shared representation, and their weighted loss.

    Args:
        in_features: Size of the shared representation.
        problem_labels: Label names per problem (see :func:`resolve_problem_labels`).
        class_weights: Optional loss weight per class, per problem (the paper's inverse-frequency
            weights); problems without weights use uniform ones.

    Example:
        >>> heads = ProblemHeads(4, {"humour": ["not_funny", "funny"]}, {"humour": [0.6, 2.0]})
        >>> heads(torch.zeros(2, 4)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        in_features: int,
        problem_labels: Mapping[str, Sequence[str]],
        class_weights: Mapping[str, Sequence[float]] | None = None,
    ):
        super().__init__()
        self.problem_labels = {k: list(v) for k, v in problem_labels.items()}
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(in_features, len(lab)) for name, lab in problem_labels.items()}
        )
        for name, labels in self.problem_labels.items():
            weights = (class_weights or {}).get(name)
            if weights is not None and len(weights) != len(labels):
                raise ValueError(f"class_weights[{name!r}] has {len(weights)} values for {len(labels)} labels")
            tensor = torch.tensor(weights if weights is not None else [1.0] * len(labels), dtype=torch.float32)
            self.register_buffer(f"class_weights_{name}", tensor, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Concatenated logits of every problem, ``(batch, total_labels)``."""
        return torch.cat([classifier(features) for classifier in self.classifiers.values()], dim=-1)

    def class_weights(self, name: str) -> torch.Tensor:
        """The loss weights of one problem's classes."""
        return getattr(self, f"class_weights_{name}")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-weighted cross-entropy of each problem, summed over problems; ``-100`` labels are ignored."""
        n_problems = len(self.problem_labels)
        if labels.ndim == 1 and n_problems == 1:
            labels = labels[:, None]
        if labels.ndim != 2 or labels.shape[1] != n_problems:
            raise ValueError(
                f"labels must have shape (batch,) for one problem or (batch, {n_problems}) for "
                f"{list(self.problem_labels)}; got {tuple(labels.shape)}"
            )
        total = logits.new_zeros(())
        for column, (name, problem_logits) in enumerate(split_logits(logits, self.problem_labels).items()):
            target = labels[:, column].long()
            if bool((target != -100).any()):
                weight = self.class_weights(name).to(problem_logits.dtype)
                total = total + F.cross_entropy(problem_logits, target, weight=weight, ignore_index=-100)
        return total
