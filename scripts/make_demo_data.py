#!/usr/bin/env python
"""Generate the demo Memotion data (release layout), load it back, and print its statistics.

Usage:
    python scripts/make_demo_data.py [configs/demo.yaml] [key=value ...]
    python scripts/make_demo_data.py configs/demo.yaml data.demo.n_train=200 data.demo.output_dir=/tmp/d overwrite=true

Reads the ``data.demo`` section of a run config (and ``overwrite``); the rest of the config is not its concern.
"""

from hf_memotion.cli import run_command
from hf_memotion.data.demo import DemoDataRunSpec, print_demo_statistics, write_demo_data


def main(argv: list[str] | None = None) -> int:
    return run_command(
        write_demo_data,
        DemoDataRunSpec,
        "configs/demo.yaml",
        argv,
        description=__doc__,
        summarize=print_demo_statistics,
    )


if __name__ == "__main__":
    raise SystemExit(main())
