"""timm's own model tests (``tests/test_models.py`` of the installed timm release) on ``polynet``.

timm parametrises its tests over ``timm.list_models()`` when the module is imported, so they run in a fresh
interpreter that imports ``hf_memotion`` (which registers ``polynet``) first. ``-k polynet`` keeps the tests
timm's filters give it (forward, backward, default configs and factory contract, TorchScript, features_only);
timm lists the models of its ``forward_intermediates`` tests by their module (ours is not among them), so
those two test functions are called directly on ``polynet``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from tests.conformance.upstream import upstream_tests

pytestmark = pytest.mark.slow  # a 95M-parameter network through forward, backward and TorchScript on a CPU

_RUNNER = textwrap.dedent(
    """
    import sys
    import hf_memotion  # noqa: F401  (registers polynet with timm before timm's tests list the models)
    import pytest

    tests, ini = sys.argv[1], sys.argv[2]
    code = pytest.main([f"{tests}/test_models.py", "-k", "polynet", "-c", ini, "-p", "no:cacheprovider", "-q",
                        "-rA", "-W", "ignore::pytest.PytestUnknownMarkWarning"])
    if code != 0:
        sys.exit(int(code))
    sys.path.insert(0, tests)
    import test_models
    test_models.test_model_forward_intermediates("polynet", 1)
    test_models.test_model_forward_intermediates_features("polynet", 1)
    print("forward_intermediates tests passed")
    """
)


def test_timm_model_tests_pass_for_polynet(tmp_path):
    tests = upstream_tests("timm")
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")  # not this project's settings (--strict-markers): timm's marks are its own
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(tests), str(ini)], capture_output=True, text=True, timeout=1800
    )
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED")]
    ran = {line.split("::")[1].split("[")[0] for line in passed}
    expected = {
        "test_model_forward",
        "test_model_backward",
        "test_model_default_cfgs",
        "test_model_forward_torchscript",
        "test_model_forward_features",
    }
    assert expected <= ran, report
    assert "forward_intermediates tests passed" in done.stdout, report
