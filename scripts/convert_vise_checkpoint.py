#!/usr/bin/env python
"""Convert a released VisE ResNet-50 checkpoint (``resnet50_1m``/``resnet50_250m`` ``.pth``) into a model folder.

Usage:
    python scripts/convert_vise_checkpoint.py resnet50_250m.pth outputs/vise-resnet50-250m \
        [--model-id org/vise-resnet50-250m]
    python scripts/push_to_hub.py outputs/vise-resnet50-250m org/vise-resnet50-250m      # then publish it

The folder loads with ``AutoModel.from_pretrained`` (features) and ``AutoImageProcessor``; its card states the
CC-BY-NC 4.0 license of the released weights. The ``.pth`` is read with ``torch.load(weights_only=True)``:
tensors only, no code runs.
"""

from __future__ import annotations

import argparse
import sys

from hf_memotion.models.vise import CheckpointMismatchError, save_converted_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the released .pth file")
    parser.add_argument("output_dir", help="folder to write (config, safetensors weights, processor, README.md)")
    parser.add_argument("--model-id", help="Hub id the folder will be published as (for the card's usage snippet)")
    args = parser.parse_args(argv)
    try:
        model = save_converted_checkpoint(args.checkpoint, args.output_dir, model_id=args.model_id)
    except (OSError, CheckpointMismatchError, RuntimeError) as err:
        sys.exit(f"error: {err}")
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"converted {args.checkpoint} -> {args.output_dir} (resnet50, {params:.1f}M parameters; license CC-BY-NC 4.0)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
