"""What the text, vision and VisE classifiers share: problem settings, one head per problem, the loss.

A classifier predicts one problem (the paper's setting: one model per emotion) or several from one
forward pass. Its logits for all problems are concatenated into one ``(batch, total_labels)``
tensor, so ``Trainer``, pipelines and ``nested_concat`` treat it like any classifier's output;
:func:`split_logits` (or ``output.problem_logits``) gives them per problem. Labels are
``(batch,)`` for one problem or ``(batch, n_problems)`` for several, ``-100`` meaning "no label".

Examples:
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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from hf_memotion.tasks import get_problem

__all__ = [
    "PROBLEM_TYPES",
    "MemotionClassifierOutput",
    "ProblemHeads",
    "ProblemLabelsMixin",
    "concatenated_id2label",
    "resolve_problem_labels",
    "split_logits",
]

logger = logging.get_logger(__name__)

#: ``config.problem_type`` values the heads' loss honours (``None``: inferred, as transformers' classifiers do).
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


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


class ProblemLabelsMixin:
    """Problem fields of a classifier config (text, vision): ``problems``, ``problem_labels``, ``id2label``.

    The labels follow from the problems; ``num_labels`` / ``id2label`` given to the config (or to
    ``from_pretrained``) relabel a one-problem model, as with any transformers classifier: the heads get the new
    size, so loading a checkpoint with other head shapes raises unless ``ignore_mismatched_sizes=True``, which
    then builds new heads. A model of several problems cannot tell which problem new labels belong to: it raises
    and asks for ``problem_labels``. Class weights of a relabelled problem no longer fit and are dropped.

    A config calls :meth:`_take_label_fields` first in ``__post_init__`` and :meth:`_finish_problems` last.

    Examples:
        >>> from hf_memotion.models.vision import MemotionVisionConfig
        >>> config = MemotionVisionConfig(architecture="test_resnet", problems=["humour"], num_labels=3)
        >>> config.problem_labels, config.num_labels
        ({'humour': ['LABEL_0', 'LABEL_1', 'LABEL_2']}, 3)
    """

    def _take_label_fields(self, kwargs: dict) -> tuple[int | None, dict | None]:
        requested = kwargs.pop("num_labels", None), self.id2label
        kwargs.pop("label2id", None)
        self.id2label = None
        self.label2id = None
        return requested

    def _finish_problems(self, num_labels: int | None = None, id2label: Mapping | None = None) -> None:
        problems = self.problems or ["sentiment"]
        if isinstance(problems, str) or not all(isinstance(p, str) for p in problems):
            raise ValueError(f"problems must be a list of problem names, got {problems!r}")
        if self.problem_labels is not None and not isinstance(self.problem_labels, dict):
            raise ValueError(f"problem_labels must map problem names to label lists, got {self.problem_labels!r}")
        self.problems = list(problems)
        try:
            labels = resolve_problem_labels(self.problems, self.problem_labels)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        requested = None
        if id2label is not None:
            given = [name for _, name in sorted((int(k), v) for k, v in id2label.items())]
            if given != list(concatenated_id2label(labels).values()):
                requested = given
        total = len(requested) if requested is not None else sum(len(v) for v in labels.values())
        if num_labels is not None and int(num_labels) != total:
            requested = [f"LABEL_{i}" for i in range(int(num_labels))]
        if requested is not None:
            labels = self._relabelled(labels, requested)
        self.problem_labels = labels
        if self.class_weights is not None:
            unknown = [p for p in self.class_weights if p not in self.problem_labels]
            if unknown:
                raise ValueError(f"class_weights given for problems this model does not predict: {unknown}")
        self._set_label_maps()

    def _relabelled(self, labels: dict[str, list[str]], new: list[str]) -> dict[str, list[str]]:
        if not new or len(set(new)) != len(new):
            raise ValueError(f"new labels {new} must be at least one, each named once (num_labels / id2label)")
        if len(labels) != 1:
            raise ValueError(
                f"this model predicts {list(labels)} ({sum(len(v) for v in labels.values())} labels in all); "
                f"{len(new)} new labels cannot say which problem they belong to: pass "
                "problem_labels={problem: [label, ...]} instead of num_labels / id2label"
            )
        (problem,) = labels
        weights = dict(self.class_weights or {})
        if problem in weights and len(weights[problem]) != len(new):
            logger.warning(
                "class_weights[%r] had %d values for the old labels: dropped", problem, len(weights[problem])
            )
            weights.pop(problem)
            self.class_weights = weights or None
        return {problem: list(new)}

    def _set_label_maps(self) -> None:
        id2label = concatenated_id2label(self.problem_labels)
        self.id2label = id2label
        self.label2id = {label: i for i, label in id2label.items()}

    @property
    def num_labels(self) -> int | None:
        """Labels over all problems (the width of the concatenated logits)."""
        return len(self.id2label) if self.id2label is not None else None

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        if self.id2label is None or not isinstance(getattr(self, "problem_labels", None), dict):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}  # during PretrainedConfig's own init
            self.label2id = {v: k for k, v in self.id2label.items()}
            return
        if num_labels != self.num_labels:
            self.problem_labels = self._relabelled(self.problem_labels, [f"LABEL_{i}" for i in range(num_labels)])
            self._set_label_maps()


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
        loss: The heads' loss (see :meth:`ProblemHeads.loss`), when labels were given.
        logits: ``(batch, total_labels)``: every problem's logits, concatenated in config order.
        problem_logits: The same logits per problem name.
        pooler_output: The representation fed to the heads, ``(batch, hidden)``.
        hidden_states: With ``output_hidden_states=True``: the backbone's per-layer states, then the head's.
        attentions: With ``output_attentions=True``: the backbone's attention weights (text models).

    Examples:
        >>> MemotionClassifierOutput(logits=torch.zeros(1, 3)).logits.shape
        torch.Size([1, 3])
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    problem_logits: dict[str, torch.FloatTensor] | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None

    def problem_probabilities(self) -> dict[str, np.ndarray]:
        """Class probabilities per problem (softmax of ``problem_logits`` in fp32), as numpy arrays on the CPU.

        Examples:
            >>> out = MemotionClassifierOutput(problem_logits={"humour": torch.zeros(1, 2)})
            >>> out.problem_probabilities()["humour"].tolist()
            [[0.5, 0.5]]
        """
        return {p: v.float().softmax(-1).cpu().numpy() for p, v in (self.problem_logits or {}).items()}


class ProblemHeads(nn.Module):
    """One linear classifier per problem over a shared representation, and their loss.

    Args:
        in_features: Size of the shared representation.
        problem_labels: Label names per problem (see :func:`resolve_problem_labels`).
        class_weights: Optional loss weight per class, per problem (the paper's inverse-frequency
            weights); problems without weights use uniform ones.

    The class weights are non-persistent buffers (the config holds them): :meth:`reset_class_weights` refills
    them, which the models' ``_init_weights`` calls, so a model loaded with ``from_pretrained`` (built on the
    meta device) has them too.

    Examples:
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
        self.class_weight_values = {}
        for name, labels in self.problem_labels.items():
            weights = (class_weights or {}).get(name)
            if weights is not None and len(weights) != len(labels):
                raise ValueError(f"class_weights[{name!r}] has {len(weights)} values for {len(labels)} labels")
            self.class_weight_values[name] = [float(w) for w in weights] if weights is not None else [1.0] * len(labels)
            tensor = torch.tensor(self.class_weight_values[name], dtype=torch.float32)
            self.register_buffer(f"class_weights_{name}", tensor, persistent=False)

    def reset_class_weights(self) -> None:
        """Refill the class-weight buffers from the values given at construction (they are not saved)."""
        for name, values in self.class_weight_values.items():
            buffer = self.class_weights(name)
            init.copy_(buffer, torch.tensor(values, dtype=buffer.dtype, device=buffer.device))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Concatenated logits of every problem, ``(batch, total_labels)``."""
        return torch.cat([classifier(features) for classifier in self.classifiers.values()], dim=-1)

    def class_weights(self, name: str) -> torch.Tensor:
        """The loss weights of one problem's classes."""
        return getattr(self, f"class_weights_{name}")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None = None) -> torch.Tensor:
        """The loss of ``problem_type`` (``None``: inferred from the labels, as transformers' classifiers do).

        - ``"single_label_classification"`` (integer labels): class-weighted cross-entropy of each problem,
          summed over problems; labels ``(batch,)`` for one problem or ``(batch, n_problems)``, ``-100`` ignored.
        - ``"multi_label_classification"`` (float 0/1 labels ``(batch, total_labels)``): binary cross-entropy
          of every logit, the class weights weighting each label's term.
        - ``"regression"`` (float targets ``(batch, total_labels)``, or ``(batch,)`` for one output): mean
          squared error.
        """
        total_labels = logits.shape[-1]
        if problem_type is None:
            if total_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {problem_type!r}")
        if problem_type == "single_label_classification":
            return self._cross_entropy(logits, labels)
        target = labels.to(logits.dtype)
        if target.ndim == 1 and total_labels == 1:
            target = target[:, None]
        if target.shape != logits.shape:
            raise ValueError(
                f"{problem_type} labels must have shape {tuple(logits.shape)} (batch, total_labels), "
                f"got {tuple(labels.shape)}"
            )
        if problem_type == "regression":
            return F.mse_loss(logits, target)
        weight = torch.cat([self.class_weights(name) for name in self.problem_labels]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target, weight=weight)

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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
            weight = self.class_weights(name).to(problem_logits.dtype)
            if not torch.compiler.is_compiling():  # eager: a batch without a label of this problem adds nothing
                if bool((target != -100).any()):
                    total = total + F.cross_entropy(problem_logits, target, weight=weight, ignore_index=-100)
                continue
            # traced (torch.export / compile): the same weighted mean without a data-dependent branch
            losses = F.cross_entropy(problem_logits, target, weight=weight, ignore_index=-100, reduction="none")
            valid = target != -100
            weights = torch.where(valid, weight[target.clamp(min=0)], torch.zeros_like(losses))
            total = total + losses.sum() / weights.sum().clamp(min=torch.finfo(losses.dtype).tiny)
        return total
