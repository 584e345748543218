#!/usr/bin/env python
"""Train the paper's visual model(s) from a YAML config: k-fold out-of-fold probabilities, refit, save.

Usage:
    python scripts/train_vision.py [--config configs/vision_demo.yaml] [key=value ...]
    accelerate launch scripts/train_vision.py --config configs/vision_demo.yaml
"""

from hf_memotion.cli import run_base_model_cli
from hf_memotion.training.vision import run_vision_experiment

if __name__ == "__main__":
    raise SystemExit(run_base_model_cli(run_vision_experiment, "configs/vision_demo.yaml", description=__doc__))
