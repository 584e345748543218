"""A lean default install: `make demo` installs the core alone; the extras' sizes are measured, not guessed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("spark", "ray", "dev", "space", "playwright", "pyspark", "gradio")


def _installs(target: str, tmp_path: Path) -> list[str]:
    """The pip install lines `make TARGET` would run in a fresh virtual environment (dry run: nothing runs)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "pip install" in line]


def test_make_demo_installs_the_core_alone(tmp_path):
    lines = _installs("demo", tmp_path)
    assert any(re.search(r"-e \.$", line) for line in lines), lines
    assert not [line for line in lines if any(word in line for word in HEAVY)], lines


def test_make_test_installs_every_extra_the_suite_covers(tmp_path):
    extras = " ".join(_installs("test", tmp_path))
    for extra in ("dev", "docs", "space", "vise", "spark", "ocr", "ray", "onnx"):
        assert extra in extras


def test_the_install_sizes_script_measures_the_core_and_every_extra():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import install_sizes
    finally:
        sys.path.pop(0)
    figures = install_sizes.measure()
    declared = metadata.metadata("hf-memotion").get_all("Provides-Extra")
    assert set(declared) <= set(figures)
    assert figures["core"]["mb"] > 100 and figures["core"]["packages"] > 10  # torch alone is hundreds of MB
    assert all(figures[extra]["mb"] >= 0 for extra in declared)
