"""YAML run configs and their typed specs: the one reader of every config, from the file to the dataclasses.

Every section of every config is a dataclass whose defaults are written once, in its fields. A key that
is not a field is refused with one line naming the file, the section, the key and the nearest valid
key; a nested section is a dataclass field (or a list of them), read the same way. A class with a
``spec_passthrough()`` classmethod (names -> annotations) also accepts those names and keeps them in its
``extra`` field (the stock ``TrainingArguments`` fields of a ``training:`` section). A value of the wrong
simple type (a string for a flag, a float for a count) is refused the same way (a class's ``spec_advice(key,
value)`` may add what to write instead). A section whose keys depend on one of its values (a model entry, by its
``family``) names its class through ``spec_variant(values)``. A section a spec keeps as a mapping is checked in the
spec's ``__post_init__``; its errors are placed under the enclosing section.

Configs are YAML files (:func:`load_run_config`; ``key.sub=value`` overrides, :func:`apply_overrides`), or the name
of one shipped with the package. This module imports nothing else of the library, so any module may use it.

Examples:
    >>> apply_overrides({"training": {"epochs": 30}}, ["training.epochs=3", "problems=[humour]"])
    {'training': {'epochs': 3}, 'problems': ['humour']}
    >>> from hf_memotion.recipe.specs import EnsembleRunSpec
    >>> parse_spec(EnsembleRunSpec, {"stacking": {"cv": 3}}).stacking.cv
    3
    >>> parse_spec(EnsembleRunSpec, {"stacking": {"cvs": 3}}, source="demo.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hf_memotion.specs.SpecError: demo.yaml, section 'stacking': unknown key 'cvs' (did you mean 'cv'?); ...
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BUILTIN_CONFIGS",
    "SpecError",
    "apply_overrides",
    "check_keys",
    "load_run_config",
    "parse_spec",
    "spec_keys",
    "spec_to_dict",
]


class SpecError(ValueError):
    """A config that does not fit its spec: the message names file, section, key and the nearest valid key."""


def _where(source: str | None, section: str) -> str:
    place = f"section '{section}'" if section else "top level"
    return f"{source}, {place}" if source else place


def check_keys(
    values: Mapping[str, Any],
    valid: Iterable[str],
    *,
    section: str = "",
    source: str | None = None,
    also: Iterable[str] = (),
    also_name: str = "a stock TrainingArguments field",
    former: Mapping[str, str] | None = None,
) -> None:
    """Refuse keys of ``values`` not in ``valid`` (nor in ``also``, named ``also_name``), with the nearest valid key.

    ``former`` maps keys an earlier version took to the key that replaced them: the suggestion for those.

    Examples:
        >>> check_keys({"epoch": 3}, ["epochs"], section="training", source="run.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_memotion.specs.SpecError: run.yaml, section 'training': unknown key 'epoch' (did you mean 'epochs'?); ...
    """
    if not isinstance(values, Mapping):
        raise SpecError(f"{_where(source, section)}: expected a mapping of keys, got {type(values).__name__}")
    known = sorted(set(valid))
    extra = set(also)
    unknown = [k for k in values if k not in known and k not in extra]
    if not unknown:
        return
    key = unknown[0]
    renamed = (former or {}).get(key)
    near = [renamed] if renamed else difflib.get_close_matches(str(key), [*known, *sorted(extra)], n=1, cutoff=0.6)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    more = f" (and {len(unknown) - 1} more: {unknown[1:]})" if len(unknown) > 1 else ""
    shown = ", ".join(known) + (f", or {also_name}" if extra else "")
    raise SpecError(f"{_where(source, section)}: unknown key '{key}'{hint}{more}; valid keys: {shown}")


def spec_keys(cls: type) -> list[str]:
    """The keys a section of type ``cls`` takes (its init fields, less ``extra`` when it passes keys through)."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if hasattr(cls, "spec_passthrough"):
        names = [n for n in names if n != "extra"]
    return names


def _dataclass_of(hint: Any) -> tuple[type | None, bool]:
    """``(dataclass, is_list)`` when a field's type is a dataclass, a list of one, or an optional of either."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                found = _dataclass_of(arg)
                if found[0] is not None:
                    return found
        return None, False
    if origin in (list, typing.List):  # noqa: UP006
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return (inner, True) if dataclasses.is_dataclass(inner) else (None, False)
    return (hint, False) if isinstance(hint, type) and dataclasses.is_dataclass(hint) else (None, False)


_SIMPLE = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _type_problem(value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for a simple annotation (bool, int, float, str, optionals of them), or None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else " or ".join(dict.fromkeys(p for p in problems if p))
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        return None if value in allowed and not isinstance(value, bool) else " or ".join(map(repr, allowed))
    if hint not in _SIMPLE:
        return None  # containers, enums, nested specs: checked elsewhere or by the class itself
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return None
    if hint is int and isinstance(value, bool):
        return _SIMPLE[hint]
    return None if isinstance(value, hint) else _SIMPLE[hint]


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError:  # annotations naming classes local to a function: no nested sections to find
        return {}


def _check_value(cls: type, key: str, value: Any, hint: Any, where: str) -> None:
    problem = _type_problem(value, hint)
    if problem is not None:
        advice = cls.spec_advice(key, value) if hasattr(cls, "spec_advice") else None
        raise SpecError(f"{where}: '{key}' must be {problem}, got {value!r}" + (f"; {advice}" if advice else ""))


def parse_spec(cls: type, values: Mapping[str, Any] | None, *, source: str | None = None, section: str = "") -> Any:
    """Build the dataclass ``cls`` from a config mapping, recursing into nested spec sections.

    Args:
        cls: The spec dataclass.
        values: The section (``None``: all defaults).
        source: The config file (named in errors).
        section: Dotted path of this section (named in errors).

    Raises:
        SpecError: An unknown key, a section that is not a mapping, or a value the spec refuses.
    """
    values = {} if values is None else values
    if hasattr(cls, "spec_variant") and isinstance(values, Mapping):
        variant = cls.spec_variant(values)  # a section whose keys depend on one of them (a member's family)
        if variant is not cls:
            return parse_spec(variant, values, source=source, section=section)
    stock = dict(cls.spec_passthrough()) if hasattr(cls, "spec_passthrough") else {}  # name -> annotation
    own = spec_keys(cls)
    # ``extra`` itself is accepted too, so that a spec's own dict (``to_dict()``) reads back
    former = getattr(cls, "spec_former_keys", None)
    check_keys(values, own, section=section, source=source, also={*stock, "extra"} if stock else (), former=former)
    hints = _hints(cls)
    where = _where(source, section)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key == "extra" and stock:
            extra.update(dict(value or {}))
            continue
        if key not in own:
            _check_value(cls, key, value, stock.get(key), where)
            extra[key] = value
            continue
        _check_value(cls, key, value, hints.get(key), where)
        child = f"{section}.{key}" if section else key
        nested, is_list = _dataclass_of(hints.get(key))
        if value is None or nested is None:
            kwargs[key] = value
        elif is_list:
            if not isinstance(value, list):
                raise SpecError(f"{_where(source, child)}: expected a list of sections, got {type(value).__name__}")
            kwargs[key] = [
                parse_spec(nested, item, source=source, section=f"{child}.{i}") for i, item in enumerate(value)
            ]
        else:
            kwargs[key] = parse_spec(nested, value, source=source, section=child)
    if extra:
        kwargs["extra"] = extra
    try:
        return cls(**kwargs)
    except SpecError as err:  # a section checked inside the class: place it under this one
        message = str(err)
        if message.startswith("section '"):
            inner, rest = message[len("section '") :].split("': ", 1)
            raise SpecError(f"{_where(source, f'{section}.{inner}' if section else inner)}: {rest}") from None
        raise
    except (TypeError, ValueError) as err:
        raise SpecError(f"{_where(source, section)}: {err}") from None


def spec_to_dict(spec: Any) -> Any:
    """A spec as plain data (nested dataclasses to dicts, tuples to lists), e.g. for a report.

    Examples:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class S:
        ...     steps: tuple = (1, 2)
        >>> spec_to_dict(S())
        {'steps': [1, 2]}
    """
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return {f.name: spec_to_dict(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
    if isinstance(spec, list | tuple):
        return [spec_to_dict(v) for v in spec]
    if isinstance(spec, Mapping):
        return {k: spec_to_dict(v) for k, v in spec.items()}
    return spec


# ------------------------------------------------------------------------------------------------ YAML files


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
