"""YAML run configs: reading them with ``key.sub=value`` overrides, and the data section they share.

Examples:
    >>> apply_overrides({"training": {"epochs": 30}}, ["training.epochs=3", "problems=[humour]"])
    {'training': {'epochs': 3}, 'problems': ['humour']}
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import yaml

__all__ = ["BUILTIN_CONFIGS", "apply_overrides", "load_data", "load_run_config"]


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``dotted.key=value`` overrides applied (values parsed as YAML).

    List items are addressed by index: ``models.1.training.epochs=3``.
    """
    out = copy.deepcopy(dict(config))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. training.epochs=3")
        key, raw = item.split("=", 1)
        node: Any = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if isinstance(node, list):  # a list item by index, e.g. models.0.training.epochs=3
                node = _list_item(node, part, item)
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
            node = child
        if isinstance(node, list):
            node[_index(node, parts[-1], item)] = _override_value(raw, item)
            continue
        node[parts[-1]] = _override_value(raw, item)
    return out


def _override_value(raw: str, item: str) -> Any:
    """An override's value, parsed as plain YAML; a tag (``!!python/...``) or bad YAML is one line naming it."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(
            f"override {item!r}: the value is not plain YAML ({_first_line(err)}); write a number, string, list or "
            "mapping"
        ) from None


def _first_line(err: Exception) -> str:
    """The first line of a YAML error's own reason (its ``problem``), for one-line messages."""
    return str(getattr(err, "problem", None) or err).splitlines()[0]


def _index(items: list, part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ValueError(f"override {item!r}: {part!r} is not an index of a list of {len(items)} item(s)")
    return int(part)


def _list_item(items: list, part: str, item: str) -> Any:
    child = items[_index(items, part, item)]
    if not isinstance(child, dict | list):
        raise ValueError(f"override {item!r}: item {part} is not a section")
    return child


#: Configs shipped with the package, loadable by name (``load_run_config("demo")``).
BUILTIN_CONFIGS = Path(__file__).resolve().parent / "configs"


def load_run_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a YAML config (``None``: empty) and apply overrides.

    ``path`` is a file, or the name of a config shipped with the package (``"demo"``: the default job,
    also what the Gradio Space trains on its first start).

    Examples:
        >>> load_run_config("demo", ["n_splits=2"])["n_splits"]
        2
    """
    config: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        builtin = BUILTIN_CONFIGS / f"{path}.yaml"
        if not file.is_file() and str(path).isidentifier() and builtin.is_file():
            file = builtin
        if not file.is_file():
            names = sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml"))
            raise FileNotFoundError(f"config file {file} not found (built-in configs: {names})")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{file} is not plain YAML ({_first_line(err)}); tags such as !!python/... are refused"
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{file} must hold a YAML mapping at the top level")
        config = loaded or {}
    return apply_overrides(config, overrides)


def load_data(section: Mapping[str, Any], *, source: str | None = None) -> datasets.DatasetDict:
    """Load the data a config's ``data:`` section names.

    ``{"path": ...}`` is anything :func:`hf_memotion.data.load_memotion` reads (a release folder, a
    parquet file, a Hub id) with its options (``test_path``, ``on_error``, ``verify_images``,
    ``revision``, ``num_proc``); ``{"demo": {...}}`` generates (or reuses) the demo data with those
    :class:`~hf_memotion.data.DemoDataSpec` settings plus ``output_dir``. A misspelt key is refused with
    the file (``source``), the section and the nearest valid key.

    Examples:
        >>> load_data({"demo": {"n_trian": 10}}, source="run.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_memotion.specs.SpecError: run.yaml, section 'data.demo': unknown key 'n_trian' (did you mean 'n_train'?); ...
    """
    import dataclasses
    import inspect

    from hf_memotion.data import DemoDataSpec, load_memotion, make_demo_data
    from hf_memotion.specs import check_keys

    section = dict(section or {})
    if "path" in section and "demo" in section:
        raise ValueError("the data section takes either 'path' or 'demo', not both")
    if "demo" in section:
        from hf_memotion.distributed import process_state

        demo = dict(section.pop("demo") or {})
        check_keys(section, ["demo"], section="data", source=source)
        demo_keys = ["output_dir", "overwrite", *(f.name for f in dataclasses.fields(DemoDataSpec))]
        check_keys(demo, demo_keys, section="data.demo", source=source)
        with process_state().main_process_first():  # one process writes, the others reuse its files
            root = make_demo_data(demo.pop("output_dir", "outputs/demo_data"), **demo)
        return load_memotion(root)
    if "path" in section:
        options = [n for n in inspect.signature(load_memotion).parameters if n != "path"]
        check_keys(section, ["path", *options], section="data", source=source)
        path = section.pop("path")
        return load_memotion(path, **section)
    raise ValueError("the data section needs 'path' (Memotion folder, data file or Hub id) or 'demo' (settings)")
