#!/usr/bin/env python
"""Train the modality ensemble from a YAML config: base models, stacking, evaluation, ensemble repo, report.

Usage:
    python scripts/train.py [configs/demo.yaml] [key=value ...]
    accelerate launch scripts/train.py configs/paper.yaml
    python scripts/train.py configs/demo.yaml push_to_hub.repo_id=me/memotion-demo   # then publish
    python scripts/train.py configs/paper.yaml --plan   # trainings, FLOPs, GPU-hours and disk; trains nothing
"""

from hf_memotion.cli import run_command
from hf_memotion.recipe.specs import EnsembleRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(
        "hf_memotion.recipe.ensemble_recipe:run_training",
        EnsembleRunSpec,
        "configs/demo.yaml",
        argv,
        description=__doc__,
        summarize="hf_memotion.recipe.ensemble_recipe:print_training_summary",
        saved_folders="hf_memotion.recipe.ensemble_recipe:ensemble_folder",
        plan="hf_memotion.recipe.planning:plan_training",
        show_plan="hf_memotion.recipe.planning:print_plan",
    )


if __name__ == "__main__":
    raise SystemExit(main())
