#!/usr/bin/env python
"""Pretrain a VisE backbone on mined engagement labels (streamed; resumable; data-parallel under accelerate).

Usage:
    python scripts/pretrain_vise.py [configs/vise_pretrain_demo.yaml] [key=value ...]
    python scripts/pretrain_vise.py data.labels=outputs/vise_mined data.mine=null pretraining.architecture=resnet50 \
        pretraining.image_size=224 pretraining.batch_size=256 pretraining.bf16=true
    accelerate launch --num_processes 8 scripts/pretrain_vise.py my_config.yaml

Writes ``<output_dir>/backbone`` (``AutoModel.from_pretrained`` gives the VisE backbone),
``<output_dir>/pretraining`` (with both heads), ``<output_dir>/pretraining.json`` (settings, loss curves)
and ``<output_dir>/loss_curves.png``. A killed run started again resumes from its last checkpoint.
"""

from hf_memotion.cli import run_command
from hf_memotion.vise.commands import pretrain, print_pretraining_summary
from hf_memotion.vise.specs import PretrainRunSpec


def main(argv: list[str] | None = None) -> int:
    return run_command(
        pretrain,
        PretrainRunSpec,
        "configs/vise_pretrain_demo.yaml",
        argv,
        description=__doc__,
        summarize=print_pretraining_summary,
    )


if __name__ == "__main__":
    raise SystemExit(main())
