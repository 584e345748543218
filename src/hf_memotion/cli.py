"""The shared body of the recipe scripts: parse a config and overrides, run, print the scores (main process).

Example:
    >>> # scripts/train_text.py: raise SystemExit(run_base_model_cli(run_text_experiment, "configs/text_demo.yaml"))
    >>> callable(run_base_model_cli)
    True
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_memotion.config import load_run_config
from hf_memotion.data import ImageDecodeError
from hf_memotion.distributed import process_state
from hf_memotion.hub.publishing import HubPublishError, PushSettings

__all__ = ["USER_ERRORS", "parse_config_arguments", "publish_folders", "read_run_config", "run_base_model_cli"]

#: Errors that mean "fix your input": reported as one line, not a traceback.
USER_ERRORS = (FileNotFoundError, ValueError, KeyError, TypeError, RuntimeError, ImageDecodeError)


def parse_config_arguments(
    argv: Sequence[str] | None, description: str, default_config: str, example: str
) -> tuple[str, list[str]]:
    """``SCRIPT [CONFIG] [key=value ...]``: the config path (the default when only overrides are given) and overrides.

    Also sets up INFO logging, as every recipe script does.

    Example:
        >>> parse_config_arguments(["epochs=3"], "Train.", "configs/demo.yaml", "epochs=30")
        ('configs/demo.yaml', ['epochs=3'])
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", nargs="?", default=default_config, help="YAML config")
    parser.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example}")
    args = parser.parse_args(argv)
    if "=" in args.config:  # only overrides were given: they apply to the default config
        args.overrides.insert(0, args.config)
        args.config = default_config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.config, list(args.overrides)


def run_base_model_cli(
    runner: Callable[[dict[str, Any]], Mapping[str, Any]],
    default_config: str,
    argv: Sequence[str] | None = None,
    description: str = "Train base models from a YAML config.",
) -> int:
    """Run a base-model recipe (``run_text_experiment``, ``run_vision_experiment``) as a command."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=default_config, help="YAML run config")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.epochs=5 seed=1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    process_state()  # before anything else: N launched processes form one data-parallel group
    try:
        config, push = read_run_config(args.config, args.overrides)
        if push is not None and config.get("layout") == "per_problem" and "{name}" not in push.repo_id:
            raise ValueError("layout per_problem saves one model per problem: put {name} in push_to_hub.repo_id")
        results = runner(config)
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    if not process_state().is_main_process:
        return 0
    for name, result in results.items():
        print(f"[{name}] saved to {result.output_dir / 'model'}")
        rows = [("out-of-fold", result.oof_scores)] + ([("test", result.test_scores)] if result.test_scores else [])
        for label, scores in rows:
            print(f"  {label:<12} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if push is not None:
        publish_folders(push, {name: result.output_dir / "model" for name, result in results.items()})
    return 0


def read_run_config(path: str | None, overrides: Sequence[str]) -> tuple[dict[str, Any], PushSettings | None]:
    """A training script's config, with its ``push_to_hub:`` section taken out as :class:`PushSettings`."""
    config = load_run_config(path, overrides)
    return config, PushSettings.from_config(config.pop("push_to_hub", None))


def publish_folders(push: PushSettings, folders: Mapping[str, Path]) -> None:
    """Publish each saved folder (main process, after training); a Hub error ends with one readable line."""
    for name, folder in folders.items():
        try:
            published = push.push(folder, name)
        except HubPublishError as err:
            sys.exit(f"error: publishing {folder} failed, the trained files stay on disk: {err}")
        print(f"[{name}] published {len(published.files)} files to {published.repo_id}: {published.url}")
