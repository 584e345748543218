#!/usr/bin/env python
"""Train the modality ensemble from a YAML config: base models, stacking, evaluation, ensemble repo, report.

Usage:
    python scripts/train.py [configs/demo.yaml] [key=value ...]
    accelerate launch scripts/train.py configs/paper.yaml
    python scripts/train.py configs/demo.yaml push_to_hub.repo_id=me/memotion-demo   # then publish
    python scripts/train.py configs/paper.yaml --plan   # trainings, FLOPs, GPU-hours and disk; trains nothing
"""

from hf_memotion.cli import run_command
from hf_memotion.training.planning import plan_training, print_plan
from hf_memotion.training.recipe import ensemble_folder, print_training_summary, run_training
from hf_memotion.training.run_specs import EnsembleRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(
        run_training,
        EnsembleRunSpec,
        "configs/demo.yaml",
        argv,
        description=__doc__,
        summarize=print_training_summary,
        saved_folders=ensemble_folder,
        plan=plan_training,
        show_plan=print_plan,
    )


if __name__ == "__main__":
    raise SystemExit(main())
