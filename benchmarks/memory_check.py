#!/usr/bin/env python
"""Memory that does not grow with the ensemble: peak memory of a 4-model and a 36-model run, side by side.

Usage:
    python benchmarks/memory_check.py [--output memory_check.json]   # CPU: peak RSS; a CUDA GPU: peak GPU memory too
    python benchmarks/memory_check.py --families bert gpt2 --n-train 48

Each run trains, in a fresh process, four tiny text families (BERT, RoBERTa, GPT-2, XLNet; hidden size 256, so a
model's weights are about 7 MB and its Adam state twice that): once as 4 multi-task models, once as 36 per-problem
models (the paper's layout). A run that kept its models (on the device or in RAM) would hold 32 more of them at the
end; the recipe frees each model once it is saved, so both peaks should be the same up to noise. The script prints
both peaks and their difference against ``--margin-mb`` (default 120 MB, about half of what 32 kept models with
their optimizer state would add) and exits 1 when the 36-model run exceeds the 4-model one by more.
On a GPU (``torch.cuda.max_memory_allocated``) the same bound applies to device memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FAMILIES = ("bert", "roberta", "gpt2", "xlnet")


def run_config(folder: Path, name: str, layout: str, families: list[str], n_train: int) -> dict:
    """The recipe's config of one run: a tiny text model per family, ``layout`` multitask or per_problem."""
    models = [
        {
            "name": family,
            "family": "text",
            "backbone": f"tiny:{family}",
            "layout": layout,
            "tiny": {"hidden_size": 256, "num_layers": 2, "num_heads": 4},
            "model": {"lstm_hidden_size": 64, "attention_size": 32, "ffn_size": 32, "max_length": 32},
            "training": {
                "optimizer": "adam",
                "learning_rate": 0.001,
                "epochs": 1,
                "batch_size": 16,
                "early_stopping_patience": None,
                "validation_fraction": 0,
            },
        }
        for family in families
    ]
    return {
        "data": {"demo": {"output_dir": str(folder / "data"), "n_train": n_train, "n_test": 16, "seed": 0}},
        "output_dir": str(folder / name),
        "n_splits": 2,
        "models": models,
        "stacking": {"methods": ["average"]},
        "bf16_check": False,
    }


def peak_of_a_run(config: dict) -> dict:
    """Run the recipe in a fresh process; its peak RSS (MB), peak GPU memory (MB, on CUDA) and models trained."""
    code = textwrap.dedent(f"""
        import json
        import torch
        from hf_memotion.benchmarking import peak_rss_bytes
        from hf_memotion.recipe.ensemble_recipe import run_training
        run_training(json.loads({json.dumps(json.dumps(config))}))
        gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        print(json.dumps({{"peak_rss_mb": peak_rss_bytes() / 2**20, "peak_gpu_mb": gpu}}))
    """)
    env = {**os.environ, "HF_MEMOTION_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the run {config['output_dir']} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["models"] = len(list((Path(config["output_dir"]) / "models").iterdir()))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--n-train", type=int, default=48)
    parser.add_argument("--margin-mb", type=float, default=120.0)
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hf_memotion_memory_") as tmp:
        few = peak_of_a_run(run_config(Path(tmp), "few", "multitask", args.families, args.n_train))
        many = peak_of_a_run(run_config(Path(tmp), "many", "per_problem", args.families, args.n_train))
    report = {"few": few, "many": many, "margin_mb": args.margin_mb}
    checks = [("peak RSS", "peak_rss_mb")] + ([("peak GPU memory", "peak_gpu_mb")] if few["peak_gpu_mb"] else [])
    ok = True
    for label, key in checks:
        grew = many[key] - few[key]
        ok &= grew <= args.margin_mb
        print(
            f"{label}: {few['models']} models {few[key]:.0f} MB, {many['models']} models {many[key]:.0f} MB "
            f"({grew:+.0f} MB; bound +{args.margin_mb:.0f} MB): {'within' if grew <= args.margin_mb else 'OVER'}"
        )
    report["within_bound"] = ok
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
