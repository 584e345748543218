#!/usr/bin/env python
"""Mine VisE pseudo-labels (comment and reaction clusters) from an engagement corpus, resumably by shard.

Usage:
    python scripts/mine_vise_labels.py [configs/vise_mining_demo.yaml] [key=value ...]
    python scripts/mine_vise_labels.py configs/vise_mining_demo.yaml data.path=/data/posts data.demo=null num_proc=8
    python scripts/mine_vise_labels.py engine=spark            # the same two steps as a Spark job (local[num_proc])
    python scripts/mine_vise_labels.py configs/vise_mining_paper.yaml --plan   # posts, core-hours, disk; runs nothing
    spark-submit scripts/mine_vise_labels.py engine=spark data.path=hdfs:///posts   # a cluster: docs/vise_spark.md
"""

from hf_memotion.cli import run_command
from hf_memotion.vise.commands import mine, plan_mining, print_mining_plan, print_mining_summary
from hf_memotion.vise.specs import MiningRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(
        mine,
        MiningRunSpec,
        "configs/vise_mining_demo.yaml",
        argv,
        description=__doc__,
        summarize=print_mining_summary,
        plan=plan_mining,
        show_plan=print_mining_plan,
    )


if __name__ == "__main__":
    raise SystemExit(main())
