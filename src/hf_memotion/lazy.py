"""Lazy package attributes: a package names what it exports, and each name is imported on first use.

The packages' ``__init__`` files use it so that importing one module of the library does not import every other
(``import hf_memotion`` and ``scripts/train.py --help`` stay quick); the model packages stay eager, as they
register their classes on import. This is the PEP 562 pattern (transformers' ``_LazyModule`` and peft do the
same), small enough to write here rather than depend on transformers' private helper.

Examples:
    >>> __getattr__, __dir__ = lazy_exports("hf_memotion.tasks", {"PROBLEM_NAMES": "hf_memotion.tasks"})
    >>> __getattr__("PROBLEM_NAMES")[0]
    'sentiment'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` serving ``exports`` (name -> defining module) on first use.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        module = sys.modules.get(package)
        if module is not None:
            setattr(module, name, value)  # resolved once
        return value

    def __dir__() -> list[str]:
        module = sys.modules.get(package)
        return sorted({*(vars(module) if module is not None else {}), *exports})

    return __getattr__, __dir__
