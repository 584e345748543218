#!/usr/bin/env python
"""Generate the demo Memotion data (release layout), load it back, and print its statistics.

Usage:
    python scripts/make_demo_data.py [--config configs/demo.yaml] [--output-dir DIR] [--n-train N]
        [--n-test N] [--seed S] [--overwrite]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from hf_memotion.data import format_statistics, load_memotion, make_demo_data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML file with a `data: demo:` section (e.g. configs/demo.yaml)")
    parser.add_argument("--output-dir", type=Path, help="root folder to write (default: outputs/demo_data)")
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings: dict = {}
    if args.config is not None:
        if not args.config.is_file():
            sys.exit(f"error: config file {args.config} not found")
        settings = dict(((yaml.safe_load(args.config.read_text()) or {}).get("data") or {}).get("demo") or {})
    for key in ("output_dir", "n_train", "n_test", "seed", "image_size"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    output_dir = Path(settings.pop("output_dir", "outputs/demo_data"))
    try:
        root = make_demo_data(output_dir, overwrite=args.overwrite, **settings)
    except (FileExistsError, TypeError, ValueError) as err:
        sys.exit(f"error: {err}")
    dataset = load_memotion(root)
    print(f"Demo Memotion data in {root} (release layout: memotion_dataset_7k/, memotion_test_release/)")
    print(format_statistics(dataset))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
