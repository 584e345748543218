"""The process state of a (possibly data-parallel) run.

``accelerate launch --multi_gpu --num_processes N`` on a machine without CUDA starts N processes,
but a default ``PartialState()`` then sees one process each (silent duplicated work). Asking for the
CPU backend when there is no GPU makes them one gloo data-parallel group. Call :func:`process_state`
before anything else in a script; every later ``PartialState()`` (``Trainer`` included) shares it.

Examples:
    >>> process_state().num_processes >= 1
    True
"""

from __future__ import annotations

import torch
from accelerate import PartialState

__all__ = ["process_state"]


def process_state() -> PartialState:
    """The shared accelerate ``PartialState`` (gloo across processes on a CPU-only machine)."""
    return PartialState(cpu=not torch.cuda.is_available())
