#!/usr/bin/env python
"""Train the paper's visual model(s) from a YAML config: k-fold out-of-fold probabilities, refit, save.

Usage:
    python scripts/train_vision.py [configs/vision_demo.yaml] [key=value ...]
    accelerate launch scripts/train_vision.py configs/vision_paper.yaml
"""

from hf_memotion.cli import run_command
from hf_memotion.recipe.specs import MemberRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(
        "hf_memotion.recipe.member_runs:run_member",
        MemberRunSpec,
        "configs/vision_demo.yaml",
        argv,
        description=__doc__,
        summarize="hf_memotion.training.runs:print_run_results",
        saved_folders="hf_memotion.training.runs:saved_model_folders",
    )


if __name__ == "__main__":
    raise SystemExit(main())
