#!/usr/bin/env python
"""Train the paper's visual model(s) from a YAML config: k-fold out-of-fold probabilities, refit, save.

Usage:
    python scripts/train_vision.py [--config configs/vision_demo.yaml] [key=value ...]
    accelerate launch scripts/train_vision.py --config configs/vision_demo.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from hf_memotion.config import load_run_config
from hf_memotion.data import ImageDecodeError
from hf_memotion.training.vision import run_vision_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/vision_demo.yaml", help="YAML run config")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.epochs=5 architecture=resnet18")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = run_vision_experiment(load_run_config(args.config, args.overrides))
    except (FileNotFoundError, ValueError, KeyError, TypeError, ImageDecodeError) as err:
        sys.exit(f"error: {err}")
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    for name, result in results.items():
        print(f"[{name}] saved to {result.output_dir / 'model'}")
        rows = [("out-of-fold", result.oof_scores)] + ([("test", result.test_scores)] if result.test_scores else [])
        for label, scores in rows:
            print(f"  {label:<12} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
