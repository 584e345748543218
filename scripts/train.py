#!/usr/bin/env python
"""Train the modality ensemble from a YAML config: base models, stacking, evaluation, ensemble repo, report.

Usage:
    python scripts/train.py [configs/demo.yaml] [key=value ...]
    accelerate launch scripts/train.py configs/paper.yaml
    python scripts/train.py configs/demo.yaml push_to_hub.repo_id=me/memotion-demo   # then publish
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hf_memotion.cli import USER_ERRORS, publish_folders, read_run_config
from hf_memotion.distributed import process_state
from hf_memotion.training.recipe import format_table7, run_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/demo.yaml", help="YAML run config")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. n_splits=5 output_dir=outputs/x")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    process_state()  # before anything else: N launched processes form one data-parallel group
    try:
        config, push = read_run_config(args.config, args.overrides)
        report = run_training(config)
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    if process_state().is_main_process:
        output = Path(config.get("output_dir", "outputs/run"))
        print(format_table7(report["table7"]))
        print("meta-estimators:", ", ".join(f"{p}={m}" for p, m in report["table8"].items()))
        print(f"ensemble: {output}/ensemble  report: {output}/report.md  submission: {output}/answer.txt")
        if push is not None:
            publish_folders(push, {"ensemble": output / "ensemble"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
