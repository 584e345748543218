"""Registering hf-memotion with transformers, timm and the pipeline registry: lazily, when transformers is used.

Each model package registers its own classes when it is imported (``register_model_family`` in its
``__init__``; PolyNet through timm's ``@register_model``), and ``register_pipeline`` adds ``"meme-emotion"``.
After ``import hf_memotion``, the Auto classes resolve ``memotion_text``, ``memotion_vision``, ``vise`` and
``memotion_ensemble``, ``pipeline("meme-emotion")`` works and ``timm.create_model("polynet")`` works (the
visual package is imported with the others).

``import hf_memotion`` itself stays quick: importing the model packages costs torch and transformers' modeling
code (seconds), and transformers' pipelines more. So the registration waits for the first use of transformers'
Auto classes or pipelines (``transformers.AutoModel``, ``AutoConfig``, ``AutoImageProcessor``,
``AutoTokenizer``, ``pipeline``) or for timm: an import hook sees those modules load and registers right after the
import that loaded them has finished (never inside a half-initialised module). Where they are already loaded,
``import hf_memotion`` registers at once. Python has no post-import hook of its own and none of our
dependencies provides one that waits for the outermost import: hence the short finder below.

Saved folders carry no ``auto_map`` and no Python file (the classes need the ``hf-memotion`` package installed;
``trust_remote_code`` is never required or defaulted).

Examples:
    >>> import hf_memotion
    >>> from transformers import AutoConfig
    >>> type(AutoConfig.for_model("vise")).__name__
    'ViseConfig'
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["register_auto_classes", "register_when_transformers_is_used"]

logger = logging.getLogger(__name__)

MODEL_PACKAGES = (
    "hf_memotion.models.text",
    "hf_memotion.models.vision",
    "hf_memotion.models.multimodal",
    "hf_memotion.models.vise",
    "hf_memotion.models.ensemble",
)
#: Modules whose loading means the Auto classes are about to be used.
AUTO_MODULES = (
    "transformers.models.auto.configuration_auto",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.image_processing_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.pipelines",
    "timm",  # PolyNet joins timm's registry with the visual package
)
PIPELINE_MODULE = "transformers.pipelines"

_lock = threading.RLock()
_pending: set[str] = set()  # "models", "pipeline": what still waits for its trigger
_depth = 0  # imports under way through the hook (the registration waits until the outermost has finished)


def _register_models() -> None:
    import importlib

    for package in MODEL_PACKAGES:
        importlib.import_module(package)  # each registers its own classes on import


def _register_pipeline() -> None:
    from hf_memotion.pipelines.meme_emotion import register_pipeline

    register_pipeline()


def register_auto_classes() -> None:
    """Import every model package (each registers itself) and register the ``meme-emotion`` pipeline, now."""
    with _lock:
        _pending.clear()
        if _HOOK in sys.meta_path:
            sys.meta_path.remove(_HOOK)
    _register_models()
    _register_pipeline()


def _due() -> list[str]:
    due = []
    if "models" in _pending and any(name in sys.modules for name in AUTO_MODULES):
        due.append("models")
    if "pipeline" in _pending and PIPELINE_MODULE in sys.modules:
        due.append("pipeline")
    return due


def _run_due() -> None:
    with _lock:
        due = _due()
        _pending.difference_update(due)
        if not _pending and _HOOK in sys.meta_path:
            sys.meta_path.remove(_HOOK)
    for action in due:
        try:
            (_register_models if action == "models" else _register_pipeline)()
        except Exception as err:  # an unrelated import must not fail because of it; the reason is logged
            logger.warning(
                "hf-memotion could not register its %s with transformers (%s: %s); call "
                "hf_memotion.register_auto_classes() to see the full error",
                action,
                type(err).__name__,
                err,
            )


class _LoaderAfterImport(importlib.abc.Loader):
    """Runs a module as its own loader would, then the registrations that became due (when no import is open)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global _depth
        with _lock:
            _depth += 1
        try:
            self._loader.exec_module(module)
        finally:
            with _lock:
                _depth -= 1
                outermost = _depth == 0
        if outermost and _due():
            _run_due()

    def __getattr__(self, name: str) -> Any:  # get_filename, get_data, is_package, resource readers...
        return getattr(self._loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of transformers', timm's and hf-memotion's modules while a registration waits."""

    def find_spec(
        self, name: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _pending or not name.startswith(("transformers", "hf_memotion", "timm")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderAfterImport(spec.loader)
        return spec


_HOOK = _AfterImportFinder()


def register_when_transformers_is_used() -> None:
    """Register at once if transformers' Auto classes or pipelines are loaded, else right after they load."""
    with _lock:
        _pending.update(("models", "pipeline"))
        if _HOOK not in sys.meta_path:
            sys.meta_path.insert(0, _HOOK)
    if _depth == 0 and _due():
        _run_due()
