"""Every Python block of the README and the docs runs as written, or says why not.

A block runs in a folder holding stand-ins for the files the text names (``meme.jpg``, ``photo.jpg``, ``data``, a
tiny ensemble at ``outputs/demo/ensemble`` and a tiny VisE backbone at ``outputs/vise_pretrain_demo/backbone``). A
block that needs a download or the reader's own files is preceded by ``<!-- not run: why -->``; it must still
compile.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:^<!-- not run: (?P<why>[^\n]+?) -->\n)?^```python\n(?P<code>.*?)^```", re.M | re.S)


def _blocks():
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            name = f"{document.relative_to(ROOT)}:{line}"
            yield pytest.param(name, match.group("code"), match.group("why"), id=name)


SNIPPETS = list(_blocks())


def test_the_documents_have_python_blocks():
    assert len(SNIPPETS) >= 8 and sum(1 for s in SNIPPETS if s.values[2] is None) >= 4


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, demo_root):
    """A folder with every file and folder the blocks name."""
    import torch

    from hf_memotion.benchmarking import ENSEMBLE_SIZES, random_ensemble
    from hf_memotion.models.vise import ViseConfig, ViseModel
    from hf_memotion.models.vision import MemotionImageProcessor

    folder = tmp_path_factory.mktemp("snippets")
    meme = next((demo_root / "memotion_test_release" / "2000_data").iterdir())  # a rendered meme: OCR reads it
    Image.open(meme).convert("RGB").save(folder / "meme.jpg")
    Image.new("RGB", (48, 40), (200, 120, 30)).save(folder / "photo.jpg")
    shutil.copytree(demo_root, folder / "data")
    torch.manual_seed(0)
    random_ensemble(ENSEMBLE_SIZES["demo"]).save_pretrained(folder / "outputs" / "demo" / "ensemble")
    backbone = folder / "outputs" / "vise_pretrain_demo" / "backbone"
    ViseModel(ViseConfig(architecture="test_resnet")).save_pretrained(backbone)
    MemotionImageProcessor.from_timm("test_resnet", crop_size=32, ten_crop=False).save_pretrained(backbone)
    return folder


@pytest.mark.parametrize(("name", "code", "why"), SNIPPETS)
def test_a_documented_block_runs_as_written(name, code, why, stand_ins, monkeypatch, request):
    compiled = compile(code, name, "exec")  # every block is valid Python, run or not
    if why is not None:
        assert len(why.split()) >= 3, f"{name}: say why the block is not run"
        return
    if "OCR" in code:
        request.getfixturevalue("ocr")  # Tesseract, or a skip (a failure where CI requires it)
    monkeypatch.chdir(stand_ins)
    exec(compiled, {"__name__": "__snippet__"})
