"""The thread policy: a short OpenMP spin set on ``import hf_memotion`` before torch loads, never over the user's."""

import os
import subprocess
import sys

import pytest

# ``import hf_memotion`` loads torch (it registers the model classes), after setting the policy: the policy is set
# only where torch has not loaded yet, so seeing it set shows it came first
_SHOW = "import hf_memotion, os, sys; print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    base.pop("HF_MEMOTION_THREAD_POLICY", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}, check=True)
    return done.stdout.strip()


def test_import_sets_a_short_spin_before_torch_loads():
    assert _run(_SHOW) == "20000 True"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GOMP_SPINCOUNT": "7"}, "7 True"),  # the user's spin stands
        ({"OMP_WAIT_POLICY": "PASSIVE"}, "None True"),  # so does the user's wait policy
        ({"HF_MEMOTION_THREAD_POLICY": "0"}, "None True"),  # and the off switch
    ],
)
def test_the_policy_never_overrides_the_user(env, expected):
    assert _run(_SHOW, **env) == expected


def test_nothing_is_set_once_torch_has_loaded():
    assert _run("import torch\n" + _SHOW) == "None True"
