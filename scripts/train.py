#!/usr/bin/env python
"""Train the modality ensemble from a YAML config: base models, stacking, evaluation, ensemble repo, report.

Usage:
    python scripts/train.py [configs/demo.yaml] [key=value ...]
    accelerate launch scripts/train.py configs/paper.yaml
    python scripts/train.py configs/demo.yaml push_to_hub.repo_id=me/memotion-demo   # then publish
"""

from hf_memotion.cli import run_command
from hf_memotion.training.recipe import ensemble_folder, print_training_summary, run_training
from hf_memotion.training.run_specs import EnsembleRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(run_training, EnsembleRunSpec, "configs/demo.yaml", argv, description=__doc__,
                       summarize=print_training_summary, saved_folders=ensemble_folder)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
