#!/usr/bin/env python
"""Export a saved ensemble to a folder that ONNX Runtime serves (pipeline("meme-emotion", ..., backend="onnx")).

Usage:
    python scripts/export_onnx.py ENSEMBLE OUT [--int8 [--held-out DATA]]
    python scripts/export_onnx.py outputs/demo/ensemble outputs/demo_onnx --int8 --held-out outputs/demo_data

ENSEMBLE is a folder or Hub id; OUT is written beside and moved into place. ``--int8`` adds int8 graphs (the visual
models quantized statically, calibrated on 64 images of the ``--held-out`` folder's training split; the textual ones
dynamically), checked on its labelled test split (a Memotion folder, e.g. the demo data): ``dtype="auto"`` serves
them only if no subtask's macro-F1 moved by more than 0.005. Needs the ``onnx`` extra
(``pip install "hf-memotion[onnx]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hf_memotion  # noqa: F401  (registers the model classes)
from hf_memotion.hub.connectivity import offline_if_unreachable
from hf_memotion.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ensemble folder or Hub id (PyTorch)")
    parser.add_argument("out", help="the ONNX folder to write")
    parser.add_argument("--int8", action="store_true", help="also write dynamically quantized int8 graphs")
    parser.add_argument("--held-out", metavar="DATA", help="a Memotion folder whose labelled test split checks int8")
    args = parser.parse_args(argv)
    configure_logging()
    offline_if_unreachable()
    if args.held_out and not args.int8:
        parser.error("--held-out checks the int8 graphs: give --int8 too")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError as err:
        sys.exit(f"error: {err.name} is missing: pip install 'hf-memotion[onnx]'")
    import torch

    from hf_memotion.data.memotion import load_memotion
    from hf_memotion.ensemble import MemotionEnsembleModel

    try:
        ensemble = MemotionEnsembleModel.from_pretrained(args.model, dtype=torch.float32)
        if getattr(ensemble, "backend", "pytorch") != "pytorch":
            sys.exit(f"error: {args.model} is already an ONNX folder")
        held_out = calibration = None
        if args.held_out:
            splits = load_memotion(args.held_out)
            if "test" not in splits or ensemble.config.problems[0] not in splits["test"].column_names:
                sys.exit(f"error: {args.held_out} has no labelled test split to check the int8 graphs on")
            held_out = splits["test"]
            calibration = splits["train"].select(range(min(64, splits["train"].num_rows)))["image"]
        recorded = ensemble.export_onnx(args.out, int8=args.int8, held_out=held_out, calibration=calibration)
    except (FileNotFoundError, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"ONNX ensemble: {Path(args.out)}")
    for name, difference in recorded["max_difference"].items():
        print(f"  {name}: largest probability difference from PyTorch {difference:.1e}")
    check = recorded.get("int8")
    if check and check.get("rows"):
        from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig
        from hf_memotion.ensemble.onnx_runtime import resolve_onnx_precision

        changes = ", ".join(f"{k} {v:+.4f}" for k, v in check["macro_f1_change"].items())
        served, why = resolve_onnx_precision(MemotionEnsembleConfig(backend="onnx", onnx=recorded))
        print(f"  int8 held-out check on {check['rows']} memes: macro-F1 change {changes}")
        print(f"  dtype='auto' serves {served}: {why}")
    elif check:
        print(f"  int8: {check['reason']}")
    print(json.dumps({"load": f'pipeline("meme-emotion", model="{args.out}", backend="onnx")'}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
