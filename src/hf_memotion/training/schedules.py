"""Learning-rate schedules of both papers: linear warm-up, then a step decay at milestones.

One rule serves every training in the library. Milestones are given in epochs (the Memotion visual
models: x0.1 at epochs 40 and 60) or as fractions of training (VisE pretraining: x0.1 at 30%, 60%, 90%,
or ten halvings; VisE downstream: Hateful Memes x0.5 at 2/3). A milestone takes effect from the first
step at or past it; the warm-up rises linearly from 0 over its steps. ``Trainer``'s own schedulers have
warm-up but no step decay, hence this module.

Examples:
    >>> schedule = StepSchedule(total_steps=100, warmup_steps=5, milestones=milestone_steps([0.3, 0.6, 0.9], 100))
    >>> [round(schedule(step), 3) for step in (0, 4, 5, 29, 30, 60, 95)]
    [0.0, 0.8, 1.0, 1.0, 0.1, 0.01, 0.001]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["DECAY_PRESETS", "StepSchedule", "milestone_steps", "step_scheduler"]

#: Named decays as (milestones as fractions of training, factor at each).
DECAY_PRESETS: dict[str, tuple[tuple[float, ...], float]] = {
    "imagenet": ((0.3, 0.6, 0.9), 0.1),  # the common 90-epoch ImageNet recipe (VisE on 1.2M images)
    # ten halvings spread evenly over training: after each eleventh of it, so that all ten happen (a milestone at
    # 100% would be the last step's end and never apply)
    "vise-250m": (tuple(i / 11 for i in range(1, 11)), 0.5),
    "constant": ((), 1.0),
}


def milestone_steps(milestones: Sequence[float], total_steps: int, *, steps_per_epoch: int | None = None) -> list[int]:
    """Milestones as optimisation steps: epochs x ``steps_per_epoch``, or fractions of ``total_steps``.

    With ``steps_per_epoch`` the milestones are epochs; without, fractions (the first step at or past each).

    Examples:
        >>> milestone_steps([40, 60], 1000, steps_per_epoch=10), milestone_steps([0.667], 60)
        ([400, 600], [41])
    """
    if steps_per_epoch is not None:
        return [round(m * steps_per_epoch) for m in milestones]
    return [math.ceil(m * total_steps - 1e-9) for m in milestones]


@dataclass(frozen=True)
class StepSchedule:
    """Multiplier of the peak learning rate at each step: linear warm-up, then ``factor`` at each milestone.

    Attributes:
        total_steps: Optimisation steps of the whole run.
        warmup_steps: Steps over which the rate rises linearly from 0.
        milestones: Steps from which one more ``factor`` applies.
        factor: The decay at each milestone.

    Examples:
        >>> StepSchedule(total_steps=20, milestones=(2, 4), factor=0.5)(3)
        0.5
    """

    total_steps: int
    warmup_steps: int = 0
    milestones: Sequence[int] = ()
    factor: float = 0.1

    def __post_init__(self):
        if self.total_steps < 1 or self.warmup_steps < 0:
            raise ValueError("total_steps must be positive and warmup_steps not negative")

    def __call__(self, step: int) -> float:
        """The multiplier at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return self.factor ** sum(1 for m in self.milestones if step >= m)


def step_scheduler(optimizer: torch.optim.Optimizer, schedule: StepSchedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``schedule`` (what :class:`~hf_memotion.training.MemotionTrainer` installs)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
