"""What every family's ``train`` does first: the splits, the problems, class weights and the run's key.

A family's training is its own (the model, the preprocessing, the collator); the prologue is the same for all of
them and lives here: :func:`prepare_run` reads the splits, seeds the training settings with the run's seed, adds
the inverse-frequency class weights to the model's fields, and writes the settings that define the run (hashed into
its key: a finished fold is reused only under the same settings, see :mod:`hf_memotion.training.runs`).
:func:`train_member` is the one call that trains any member.

Examples:
    >>> from hf_memotion.data import load_memotion, make_demo_data
    >>> from hf_memotion.families import ModelEntry, MemberRun, parse_member
    >>> data = load_memotion(make_demo_data("/tmp/memotion_prepare_doc", n_train=20, n_test=5))
    >>> prepared = prepare_run(data, ModelEntry.of(parse_member({"problems": ["humour"]})), MemberRun(seed=3))
    >>> prepared.training.seed, sorted(prepared.model_kwargs), prepared.settings["n_rows"], prepared.scored
    (3, ['class_weights'], 20, True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from hf_memotion.families.base import MemberRun, MemberSpec, ModelEntry
from hf_memotion.models.heads import resolve_problem_labels
from hf_memotion.training.arguments import ClassifierTrainingArguments
from hf_memotion.training.folds import class_weights
from hf_memotion.training.runs import ClassifierRunResult, as_splits, data_provenance

__all__ = ["PreparedRun", "prepare_run", "train_member"]


@dataclass
class PreparedRun:
    """A member's run before its family builds the model: the data, the settings and the options.

    Attributes:
        train: The training split.
        test: The test split when it has every problem's labels (then scored), else ``None``.
        problems: The problems the member is trained on.
        problem_labels: Their class names.
        training: The training settings, seeded with the run's seed.
        model_kwargs: The model config's fields, with the class weights when the loss is weighted.
        settings: What defines the run (its key); the family adds what it resolves (a processor, an architecture).
        run: The run's options.
    """

    train: datasets.Dataset
    test: datasets.Dataset | None
    problems: list[str]
    problem_labels: dict[str, list[str]]
    training: ClassifierTrainingArguments
    model_kwargs: dict[str, Any]
    settings: dict[str, Any]
    run: MemberRun

    @property
    def scored(self) -> bool:
        """Whether the test split is scored (it has every problem's labels)."""
        return self.test is not None

    @property
    def test_labels(self) -> dict[str, list[int]] | None:
        """The test split's gold labels per problem (``None`` when it is not scored)."""
        return {p: self.test[p] for p in self.problems} if self.test is not None else None

    def train_labels(self) -> np.ndarray:
        """``(rows, problems)`` class ids of the training split (for datasets whose labels come from a transform)."""
        return np.stack([np.asarray(self.train[p]) for p in self.problems], axis=1)

    def options(self, card_facts: Mapping[str, Any]) -> MemberRun:
        """The run's options with the member's card facts added to what its card says (not to its key)."""
        return dataclasses.replace(self.run, card_data={"card": dict(card_facts), **(self.run.card_data or {})})


def prepare_run(data: datasets.DatasetDict | datasets.Dataset, entry: ModelEntry, run: MemberRun) -> PreparedRun:
    """The prologue of every family's ``train`` (see the module docstring)."""
    splits = as_splits(data)
    spec: MemberSpec = entry.spec
    problems = list(entry.problems)
    problem_labels = resolve_problem_labels(problems)
    train = splits["train"]
    training = dataclasses.replace(spec.training, seed=run.seed)
    model_kwargs = dict(spec.model)
    if spec.weighted_loss:
        model_kwargs["class_weights"] = {p: class_weights(train[p], len(problem_labels[p])).tolist() for p in problems}
    test = splits.get("test")
    scored = test is not None and all(p in test.column_names for p in problems)
    settings = {
        **entry.settings(),
        "training": training.to_dict(),
        "model": model_kwargs,
        "n_splits": run.n_splits,
        "n_rows": len(train),
        "data": data_provenance(train),
        **({"budget": run.budget} if run.budget else {}),
    }
    return PreparedRun(
        train=train,
        test=test if scored else None,
        problems=problems,
        problem_labels=problem_labels,
        training=training,
        model_kwargs=model_kwargs,
        settings=settings,
        run=run,
    )


def train_member(
    data: datasets.DatasetDict | datasets.Dataset,
    output_dir: str | os.PathLike,
    member: MemberSpec | ModelEntry,
    run: MemberRun | None = None,
) -> ClassifierRunResult:
    """Train one member of any family: k-fold out-of-fold probabilities, the refit, test scores, the run folder.

    Args:
        data: A ``DatasetDict`` from :func:`hf_memotion.data.load_memotion` (``train``, optional ``test``) or one
            training split.
        output_dir: The run folder (finished folds inside it are reused when the call is repeated).
        member: The member's spec (one multi-task model) or one expanded entry of it.
        run: Folds, seed, refit... (default: :class:`~hf_memotion.training.runs.MemberRun`'s).
    """
    entry = member if isinstance(member, ModelEntry) else ModelEntry.of(member)
    return entry.family.train(data, output_dir, entry, run or MemberRun())
