#!/usr/bin/env python
"""Train the paper's textual model(s) from a YAML config: k-fold out-of-fold probabilities, refit, save.

Usage:
    python scripts/train_text.py [--config configs/text_demo.yaml] [key=value ...]
    accelerate launch scripts/train_text.py --config configs/text_demo.yaml
"""

from hf_memotion.cli import run_base_model_cli
from hf_memotion.training.text import run_text_experiment

if __name__ == "__main__":
    raise SystemExit(run_base_model_cli(run_text_experiment, "configs/text_demo.yaml", description=__doc__))
