#!/usr/bin/env python
"""Pretrain a VisE backbone on mined engagement labels (streamed; resumable; data-parallel under accelerate).

Usage:
    python scripts/pretrain_vise.py [configs/vise_pretrain_demo.yaml] [key=value ...]
    python scripts/pretrain_vise.py data.labels=outputs/vise_mined pretraining.architecture=resnet50 \
        pretraining.image_size=224 pretraining.batch_size=256
    accelerate launch --num_processes 8 scripts/pretrain_vise.py my_config.yaml

Writes ``<output_dir>/backbone`` (``AutoModel.from_pretrained`` gives the VisE backbone),
``<output_dir>/pretraining`` (with both heads), ``<output_dir>/pretraining.json`` (settings, loss curves)
and ``<output_dir>/loss_curves.png``. A killed run started again resumes from its last checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hf_memotion.cli import USER_ERRORS, parse_config_arguments
from hf_memotion.config import load_run_config
from hf_memotion.distributed import process_state
from hf_memotion.training.runs import check_keys


def _mine(mining_config: str) -> str:
    """Run the mining script's config (finished shards are reused) and return its output folder."""
    from hf_memotion.vise import MiningConfig, mine_labels
    from hf_memotion.vise.engagement import resolve_corpus

    config = load_run_config(mining_config)
    corpus = resolve_corpus(config.get("data"))
    output = config.get("output_dir", "outputs/vise_mined")
    mine_labels(corpus, output, MiningConfig(**(config.get("mining") or {})), num_proc=int(config.get("num_proc", 1)))
    return output


def main(argv: list[str] | None = None) -> int:
    path, overrides = parse_config_arguments(argv, __doc__.splitlines()[0], "configs/vise_pretrain_demo.yaml",
                                             "pretraining.epochs=90")  # fmt: skip
    state = process_state()  # first: launched processes form one data-parallel group
    from hf_memotion.vise.pretraining import PretrainingSettings, plot_pretraining_curves, pretrain_vise

    try:
        config = load_run_config(path, overrides)
        check_keys(config, {"data", "output_dir", "pretraining", "resume", "license"})
        data = {k: v for k, v in (config.get("data") or {}).items() if v is not None}
        if ("labels" in data) == ("mine" in data):
            raise ValueError("the data section takes 'labels' (a mined folder) or 'mine' (a mining config to run)")
        if "mine" in data:
            with state.main_process_first():  # one process mines; the others then find it finished
                labels = _mine(data["mine"]) if state.is_main_process else None
            labels = labels or load_run_config(data["mine"]).get("output_dir", "outputs/vise_mined")
        else:
            labels = data["labels"]
        settings = PretrainingSettings.from_dict(config.get("pretraining"))
        output = Path(config.get("output_dir", "outputs/vise_pretrain"))
        report = pretrain_vise(labels, output, settings, resume=bool(config.get("resume", True)),
                               license=config.get("license"))  # fmt: skip
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    if not state.is_main_process:
        return 0
    plot_pretraining_curves(report["curves"], output / "loss_curves.png")
    curves = report["curves"]
    if curves:
        first, last = curves[0], curves[-1]
        for name in ("loss", "comment_loss", "reaction_loss"):
            if name in first and name in last:
                print(f"{name:<14} {first[name]:.4f} (step {first['step']}) -> {last[name]:.4f} (step {last['step']})")
    print(f"backbone: {output / 'backbone'}  (AutoModel.from_pretrained)   report: {output / 'pretraining.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
