"""The Memotion recipes: the modality ensemble, and a run of one member.

``scripts/train.py`` runs the ensemble's, ``scripts/train_text.py`` and ``scripts/train_vision.py`` a member's; here
are their specs, the selection of every member's candidates, the plan and the splits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_memotion.lazy import lazy_exports

__all__ = ["EnsembleRunSpec", "MemberRunSpec", "TrainingReport", "plan_training", "run_member", "run_training"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainingReport": "hf_memotion.recipe.ensemble_recipe",
        "run_training": "hf_memotion.recipe.ensemble_recipe",
        "run_member": "hf_memotion.recipe.member_runs",
        "plan_training": "hf_memotion.recipe.planning",
        "EnsembleRunSpec": "hf_memotion.recipe.specs",
        "MemberRunSpec": "hf_memotion.recipe.specs",
    },
)

if TYPE_CHECKING:
    from hf_memotion.recipe.ensemble_recipe import TrainingReport, run_training
    from hf_memotion.recipe.member_runs import run_member
    from hf_memotion.recipe.planning import plan_training
    from hf_memotion.recipe.specs import EnsembleRunSpec, MemberRunSpec
