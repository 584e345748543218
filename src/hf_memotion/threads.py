"""The thread policy: how long idle OpenMP threads spin before they sleep, so a busy machine costs its share.

torch's CPU kernels run on GNU OpenMP, whose idle threads spin for a while waiting for the next parallel region.
On a quiet machine that saves a wake-up; on a machine where another process is busy (a laptop, a shared server,
a CI runner) the spinning threads take the cores the work needs, and the demo's training ran about 8x slower
than quiet instead of about 2x (BENCHMARKS.md, "Under load"). A short spin (``GOMP_SPINCOUNT``) keeps the quiet
speed and gives the cores back under load; passive waiting (``OMP_WAIT_POLICY=PASSIVE``) gives them back too but
costs a third of the quiet speed, so it is not the default.

OpenMP reads its settings once, when torch loads: :func:`apply_thread_policy` runs on ``import hf_memotion``
(first, before it imports torch), so the scripts and any program that imports ``hf_memotion`` before torch get it. It
never overrides what a user set (``GOMP_SPINCOUNT``, ``OMP_WAIT_POLICY``), and ``HF_MEMOTION_THREAD_POLICY=0``
turns it off.

Examples:
    >>> apply_thread_policy(environ={}, torch_loaded=True)  # too late: OpenMP has read its settings
    {}
    >>> apply_thread_policy(environ={}, torch_loaded=False)
    {'GOMP_SPINCOUNT': '20000'}
    >>> apply_thread_policy(environ={"OMP_WAIT_POLICY": "ACTIVE"}, torch_loaded=False)  # the user's choice stands
    {}
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

__all__ = ["SPIN_COUNT", "apply_thread_policy"]

#: Spin iterations of an idle OpenMP thread before it sleeps (GNU OpenMP's default is 300,000).
SPIN_COUNT = 20_000


def apply_thread_policy(
    environ: MutableMapping[str, str] | None = None, *, torch_loaded: bool | None = None
) -> dict[str, str]:
    """Set a short OpenMP spin before torch loads, unless the user chose one; returns what was set.

    Args:
        environ: The environment to change (default: this process's).
        torch_loaded: Whether torch is already loaded (default: looked up); then nothing can change.
    """
    environ = os.environ if environ is None else environ
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if loaded or environ.get("HF_MEMOTION_THREAD_POLICY", "1") == "0":
        return {}
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ:
        return {}
    environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}
