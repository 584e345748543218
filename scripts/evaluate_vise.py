#!/usr/bin/env python
"""Evaluate VisE backbones with the paper's protocols: linear evaluation and fine-tuning over the LR x WD grid.

Usage:
    python scripts/evaluate_vise.py [configs/vise_eval_demo.yaml] [key=value ...]
    python scripts/evaluate_vise.py my_eval.yaml protocols=[linear]
    python scripts/evaluate_vise.py configs/vise_eval_paper.yaml --plan   # every grid point and schedule; runs nothing

Writes ``<output_dir>/results.json`` (every grid point, the chosen one, S_lr and S_wd), ``results.md``
(Tables 6/7-style scores and the hyperparameter table), ``results.png`` and ``grids.png``. Finished grid
points are kept in ``<output_dir>/runs/``: an interrupted evaluation started again skips them.
"""

from hf_memotion.cli import run_command
from hf_memotion.vise.commands import evaluate, plan_evaluation, print_evaluation_plan, print_evaluation_summary
from hf_memotion.vise.specs import EvaluationRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(
        evaluate,
        EvaluationRunSpec,
        "configs/vise_eval_demo.yaml",
        argv,
        description=__doc__,
        summarize=print_evaluation_summary,
        plan=plan_evaluation,
        show_plan=print_evaluation_plan,
    )


if __name__ == "__main__":
    raise SystemExit(main())
