"""The one command-line convention of the scripts: ``script.py [CONFIG] [key=value ...] [--plan]``.

:func:`run_command` is the whole body of every config-driven script: it parses the arguments
(``--help`` lists the config's keys, read from its spec), sets up logging and the launched processes,
reads the YAML with its overrides and its ``push_to_hub:`` section, builds the typed spec (a misspelt
key is one line naming file, section, key and the nearest valid key), runs one library function,
prints its summary on the main process and publishes what it saved. Input errors end with one line,
never a traceback.

Examples:
    >>> from hf_memotion.recipe.specs import StackingSpec
    >>> parse_arguments(["n_splits=3"], "Train.", "configs/demo.yaml", StackingSpec)
    CommandLine(config='configs/demo.yaml', overrides=['n_splits=3'], plan=False)
    >>> describe_spec(StackingSpec)
    'config keys: methods, features, cv, calibration'
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import pkgutil
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_memotion.logs import calm_progress_bars

calm_progress_bars()  # before anything imports tqdm (it reads the setting once)

from hf_memotion.data.images import ImageDecodeError  # noqa: E402
from hf_memotion.specs import spec_keys  # noqa: E402

if TYPE_CHECKING:
    from hf_memotion.hub.publishing import PushSpec

__all__ = [
    "USER_ERRORS",
    "CommandLine",
    "describe_spec",
    "parse_arguments",
    "publish_folders",
    "read_run_config",
    "run_command",
]

#: Errors that mean "fix your input": reported as one line, not a traceback.
USER_ERRORS = (FileNotFoundError, ValueError, KeyError, TypeError, RuntimeError, ImageDecodeError)


def describe_spec(spec_class: type) -> str:
    """The keys a config of ``spec_class`` takes, nested sections with their own keys (for ``--help``)."""
    hints = typing.get_type_hints(spec_class)
    parts, sections = [], []
    for name in spec_keys(spec_class):
        parts.append(name)
        hint = hints.get(name)
        inner = list(typing.get_args(hint)) or [hint]
        nested = next((a for a in inner if isinstance(a, type) and dataclasses.is_dataclass(a)), None)
        if nested is not None:
            stock = " (and any stock TrainingArguments field)" if hasattr(nested, "spec_passthrough") else ""
            sections.append(f"  {name}: {', '.join(spec_keys(nested))}{stock}")
    return "config keys: " + ", ".join(parts) + ("\nsections:\n" + "\n".join(sections) if sections else "")


@dataclass
class CommandLine:
    """A script's parsed arguments: the config, its ``key=value`` overrides, and ``--plan``."""

    config: str
    overrides: list[str]
    plan: bool = False


def parse_arguments(
    argv: Sequence[str] | None,
    description: str,
    default_config: str,
    spec_class: type | None = None,
    *,
    with_plan: bool = False,
) -> CommandLine:
    """``SCRIPT [CONFIG] [key=value ...] [--plan]``: the config (the default when only overrides are given).

    ``--plan`` exists where the script can plan (``with_plan``).

    Examples:
        >>> parse_arguments(["configs/paper.yaml", "seed=1", "--plan"], "Train.", "configs/demo.yaml", with_plan=True)
        CommandLine(config='configs/paper.yaml', overrides=['seed=1'], plan=True)
    """
    parser = argparse.ArgumentParser(
        description=description,
        epilog=describe_spec(spec_class) if spec_class is not None else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", default=None, help=f"YAML config (default: {default_config})")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.epochs=3 models.0.name=bert")
    if with_plan:
        parser.add_argument(
            "--plan",
            action="store_true",
            help="print what the run would train and cost (trainings, FLOPs, GPU-hours, disk); train nothing",
        )
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config:  # only overrides were given: they apply to the default config
        overrides.insert(0, config)
        config = None
    return CommandLine(config or default_config, overrides, bool(getattr(args, "plan", False)))


def read_run_config(path: str | None, overrides: Sequence[str]) -> tuple[dict[str, Any], PushSpec | None]:
    """A script's config, with its ``push_to_hub:`` section taken out as :class:`PushSpec`."""
    from hf_memotion.hub.publishing import PushSpec
    from hf_memotion.specs import load_run_config

    config = load_run_config(path, overrides)
    return config, PushSpec.from_config(config.pop("push_to_hub", None))


def publish_folders(push: PushSpec, folders: Mapping[str, Path]) -> None:
    """Publish each saved folder (main process, after training); a Hub error ends with one readable line."""
    from hf_memotion.hub.publishing import HubPublishError

    for name, folder in folders.items():
        try:
            published = push.push(folder, name)
        except HubPublishError as err:
            sys.exit(f"error: publishing {folder} failed, the trained files stay on disk: {err}")
        print(f"[{name}] published {len(published.files)} files to {published.repo_id}: {published.url}")


def _resolve(target: Any) -> Any:
    """A callable, or the ``"module:name"`` of one (imported only when the command runs, not for ``--help``)."""
    return pkgutil.resolve_name(target) if isinstance(target, str) else target


def run_command(
    run: Callable[[Any], Any] | str,
    spec_class: type,
    default_config: str,
    argv: Sequence[str] | None = None,
    *,
    description: str = "",
    summarize: Callable[[Any, Any], None] | str | None = None,
    saved_folders: Callable[[Any, Any], Mapping[str, Path]] | str | None = None,
    plan: Callable[..., Any] | str | None = None,
    show_plan: Callable[[Any], None] | str = print,
) -> int:
    """Parse, read the spec, run, summarise, publish: the body of a config-driven script.

    Args:
        run: The library entry point; called with the spec (and ``source=`` the config's path when it takes it).
            Here and below a callable may be given as ``"module:name"``: it is imported after the arguments are
            parsed, so ``--help`` imports neither torch nor the recipe.
        spec_class: The config's spec (it has ``from_dict(values, source=...)``).
        default_config: The config used when none is named.
        argv: Arguments (default: ``sys.argv[1:]``).
        description: The script's one-line description (``--help``).
        summarize: ``(result, spec) -> None`` prints the outcome (main process only).
        saved_folders: ``(result, spec) -> {name: folder}`` to publish when the config has ``push_to_hub:``.
        plan: ``(spec, source=...) -> plan``: what ``--plan`` computes instead of running (the flag exists only
            when given).
        show_plan: Prints the plan (main process only).
    """
    line = parse_arguments(
        argv,
        description.strip().splitlines()[0] if description else "",
        default_config,
        spec_class,
        with_plan=plan is not None,
    )
    path, overrides = line.config, line.overrides
    from hf_memotion.distributed import process_state
    from hf_memotion.hub.connectivity import offline_if_unreachable
    from hf_memotion.logs import configure_logging

    configure_logging()
    offline_if_unreachable()  # configs may name Hub models: without a network, one line instead of retries

    run, summarize, saved_folders, plan, show_plan = map(_resolve, (run, summarize, saved_folders, plan, show_plan))
    state = process_state()  # before anything else: N launched processes form one data-parallel group
    try:
        config, push = read_run_config(path, overrides)
        spec = spec_class.from_dict(config, source=path)
        if push is not None and getattr(spec, "layout", None) == "per_problem" and "{name}" not in push.repo_id:
            raise ValueError("layout per_problem saves one model per problem: put {name} in push_to_hub.repo_id")
        if push is not None and saved_folders is None:
            raise ValueError(f"{path}: this command publishes nothing; remove its push_to_hub section")
        if line.plan:
            planned = plan(spec, source=path)
            if state.is_main_process:
                show_plan(planned)
            return 0
        takes_source = "source" in inspect.signature(run).parameters
        result = run(spec, source=path) if takes_source else run(spec)
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    if not state.is_main_process:
        return 0
    if summarize is not None:
        summarize(result, spec)
    if push is not None:
        publish_folders(push, saved_folders(result, spec))
    return 0
