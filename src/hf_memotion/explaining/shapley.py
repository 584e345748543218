"""Each base model's share of an answer: exact Shapley values over the ensemble's members.

The players are the base models; the value of a set of them is the probability the meta-estimator (calibrated, as
served) gives the answer when only those models speak, and every other model's probabilities are replaced by its
*background*, what it answers on average over the training rows (the stacker keeps it; an ensemble saved before it
did gets a uniform answer instead). A model's Shapley value is its marginal effect on that probability averaged over
every order in which the models could join, so the values add up exactly to the answer's probability minus the
probability with no model's information (the *baseline*). Every one of the ``2 ** n`` sets is evaluated, in one call
of each meta-estimator: 4 sets for the demo's two models, 256 for the paper's eight. A modality's value is the sum
of its models' values.

This is written here because the game is the stacker itself (its feature blocks, rules and calibration): the
general-purpose libraries (``shap``) approximate by sampling what is exact and cheap at this size.

Examples:
    >>> import numpy as np
    >>> from hf_memotion.ensemble.stacking import fit_stackers
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> oof = {"text": {"humour": np.eye(2)[y] * 0.8 + 0.1}, "vision": {"humour": rng.dirichlet([1, 1], 300)}}
    >>> stackers = fit_stackers(oof, {"humour": y}, candidates=["logistic_regression"])
    >>> base = {"text": {"humour": np.array([[0.1, 0.9]])}, "vision": {"humour": np.array([[0.5, 0.5]])}}
    >>> values = member_shapley(stackers, base, {"humour": np.array([1])})["humour"]
    >>> bool(values.members["text"][0] > 0.2 > abs(values.members["vision"][0]))  # text carries the answer
    True
    >>> bool(np.allclose(values.baseline + values.members["text"] + values.members["vision"], values.value))
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hf_memotion.ensemble.stacking import ProblemStacker, feature_blocks

__all__ = ["MAX_MEMBERS", "Contributions", "member_shapley"]

#: The most base models whose ``2 ** n`` sets are evaluated exactly (65,536 rows per meme).
MAX_MEMBERS = 16


@dataclass
class Contributions:
    """How the members moved one problem's answer, for each meme.

    Attributes:
        members: Base model -> its Shapley value per meme, ``(n,)``.
        baseline: The answer's probability with every member at its background, ``(n,)``.
        value: The answer's probability with every member speaking (the served score), ``(n,)``.

    Examples:
        >>> c = Contributions({"text": np.array([0.3])}, np.array([0.5]), np.array([0.8]))
        >>> c.by_modality({"text": "text"})
        {'text': array([0.3])}
    """

    members: dict[str, np.ndarray]
    baseline: np.ndarray
    value: np.ndarray

    def by_modality(self, modality_of: Mapping[str, str]) -> dict[str, np.ndarray]:
        """The members' values summed per modality (``modality_of``: member -> modality)."""
        out: dict[str, np.ndarray] = {}
        for member, values in self.members.items():
            modality = modality_of[member]
            out[modality] = out.get(modality, 0.0) + values
        return out


def _owner(block: str, members: list[str]) -> str:
    """The member a feature block comes from: its own name, or ``"<member>:<problem>"`` with ``features="all"``."""
    if block in members:
        return block
    return block.partition(":")[0]


def _background(stacker: ProblemStacker, block: str, width: int) -> np.ndarray:
    values = stacker.background.get(block)
    if values is None:
        return np.full(width, 1.0 / width)
    if len(values) != width:
        raise ValueError(f"the stacker's background of {block!r} has {len(values)} values, its inputs have {width}")
    return np.asarray(values, dtype=np.float64)


def member_shapley(
    stackers: Mapping[str, ProblemStacker],
    base: Mapping[str, Mapping[str, np.ndarray]],
    answers: Mapping[str, np.ndarray],
    *,
    calibrated: bool = True,
) -> dict[str, Contributions]:
    """Exact Shapley values of the base models for each problem's answer.

    Args:
        stackers: Problem -> fitted :class:`~hf_memotion.ensemble.stacking.ProblemStacker` (an ensemble's
            ``stackers``).
        base: Base model -> problem -> probabilities ``(n, classes)`` (what
            :meth:`~hf_memotion.ensemble.MemotionEnsembleModel.base_probabilities` returns).
        answers: Problem -> the class explained for each meme, ``(n,)`` (the served answer); problems left out are
            not explained.
        calibrated: Explain the calibrated score (as served) or the meta-estimator's own output.

    Returns:
        Problem -> :class:`Contributions`.

    Raises:
        ValueError: For more than :data:`MAX_MEMBERS` members, or inputs that do not fit the stackers.
    """
    out = {}
    for problem, chosen in answers.items():
        stacker = stackers[problem]
        blocks = {
            b: np.asarray(v, dtype=np.float64)
            for b, v in feature_blocks(problem, stacker.feature_order, stacker.model_order, base).items()
        }
        members = list(dict.fromkeys(_owner(b, stacker.model_order) for b in stacker.feature_order))
        if len(members) > MAX_MEMBERS:
            raise ValueError(f"{problem}: {len(members)} members; exact Shapley values stop at {MAX_MEMBERS}")
        rows = len(next(iter(blocks.values())))
        chosen = np.asarray(chosen, dtype=np.int64).reshape(rows)
        coalitions = list(itertools.product((False, True), repeat=len(members)))  # every set, as membership flags
        filled = {}
        for block, values in blocks.items():
            member = members.index(_owner(block, stacker.model_order))
            background = _background(stacker, block, values.shape[1])
            filled[block] = np.concatenate(
                [values if flags[member] else np.broadcast_to(background, values.shape) for flags in coalitions]
            )
        own = {m: filled.pop(m) for m in stacker.model_order}
        probabilities = stacker.predict_proba(own, filled, calibrated=calibrated).reshape(len(coalitions), rows, -1)
        value = probabilities[:, np.arange(rows), chosen]  # (sets, memes)
        index = {flags: i for i, flags in enumerate(coalitions)}
        n = len(members)
        contributions = {}
        for k, member in enumerate(members):
            total = np.zeros(rows)
            for flags in coalitions:
                if flags[k]:
                    continue
                size = sum(flags)
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                joined = (*flags[:k], True, *flags[k + 1 :])
                total += weight * (value[index[joined]] - value[index[flags]])
            contributions[member] = total
        out[problem] = Contributions(contributions, value[0], value[-1])
    return out
