"""Typed run specs: the one reader that turns a YAML mapping into the dataclasses each entry point takes.

Every section of every config is a dataclass whose defaults are written once, in its fields. A key that
is not a field is refused with one line naming the file, the section, the key and the nearest valid
key; a nested section is a dataclass field (or a list of them), read the same way. A class with a
``spec_passthrough()`` classmethod (names -> annotations) also accepts those names and keeps them in its
``extra`` field (the stock ``TrainingArguments`` fields of a ``training:`` section). A value of the wrong
simple type (a string for a flag, a float for a count) is refused the same way. A section a spec keeps as
a mapping is checked in the spec's ``__post_init__``; its errors are placed under the enclosing section.

This module imports nothing else of the library, so any module may use it.

Examples:
    >>> from hf_memotion.training.run_specs import EnsembleRunSpec
    >>> parse_spec(EnsembleRunSpec, {"stacking": {"cv": 3}}).stacking.cv
    3
    >>> parse_spec(EnsembleRunSpec, {"stacking": {"cvs": 3}}, source="demo.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hf_memotion.specs.SpecError: demo.yaml, section 'stacking': unknown key 'cvs' (did you mean 'cv'?); ...
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["SpecError", "check_keys", "deprecated_names", "parse_spec", "spec_keys", "spec_to_dict"]


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
) -> None:
    """Refuse keys of ``values`` not in ``valid`` (nor in ``also``, named ``also_name``), with the nearest valid key.

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
    near = difflib.get_close_matches(str(key), [*known, *sorted(extra)], n=1, cutoff=0.6)
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


def _check_value(key: str, value: Any, hint: Any, where: str) -> None:
    problem = _type_problem(value, hint)
    if problem is not None:
        raise SpecError(f"{where}: '{key}' must be {problem}, got {value!r}")


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
    renamed = getattr(cls, "spec_renamed", {})  # old key -> new key, still read
    if isinstance(values, Mapping) and any(old in values for old in renamed):
        values = dict(values)
        for old, new in renamed.items():
            if old not in values:
                continue
            if new in values:
                raise SpecError(f"{_where(source, section)}: '{old}' and '{new}' are one setting; keep '{new}'")
            warnings.warn(
                f"{_where(source, section)}: '{old}' is deprecated; write '{new}'", FutureWarning, stacklevel=2
            )
            values[new] = values.pop(old)
    stock = dict(cls.spec_passthrough()) if hasattr(cls, "spec_passthrough") else {}  # name -> annotation
    own = spec_keys(cls)
    # ``extra`` itself is accepted too, so that a spec's own dict (``to_dict()``) reads back
    check_keys(values, own, section=section, source=source, also={*stock, "extra"} if stock else ())
    hints = _hints(cls)
    where = _where(source, section)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key == "extra" and stock:
            extra.update(dict(value or {}))
            continue
        if key not in own:
            _check_value(key, value, stock.get(key), where)
            extra[key] = value
            continue
        _check_value(key, value, hints.get(key), where)
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


def deprecated_names(module: str, renamed: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that still serves renamed classes under their old names, with a ``FutureWarning``.

    Examples:
        >>> __getattr__ = deprecated_names("hf_memotion.training.trainer", {"ClassifierTrainingConfig":
        ...                                "ClassifierTrainingArguments"})
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     __getattr__("ClassifierTrainingConfig").__name__
        'ClassifierTrainingArguments'
        >>> str(caught[0].message)
        'ClassifierTrainingConfig is deprecated: use ClassifierTrainingArguments (from hf_memotion.training.trainer)'
    """

    def __getattr__(name: str) -> Any:
        if name not in renamed:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        import importlib

        new = renamed[name]
        warnings.warn(f"{name} is deprecated: use {new} (from {module})", FutureWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)

    return __getattr__


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
