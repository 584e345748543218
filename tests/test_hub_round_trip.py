"""What is published is what loads: the files ``upload_plan`` sends, laid out as a Hub snapshot in the cache, load by
id (``HF_HUB_OFFLINE=1``) through ``from_pretrained``, the Auto classes and ``pipeline("meme-emotion")`` with the
same outputs as the local folder, for a text model, a vision model, a VisE backbone and an ensemble."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoTokenizer, pipeline

import hf_memotion  # noqa: F401  (registers the classes and the task)
from conftest import build_tiny_ensemble
from hf_memotion.hub import upload_plan
from hf_memotion.models.text import MemotionTextForSequenceClassification
from hf_memotion.models.vise import ViseConfig, ViseModel
from hf_memotion.models.vision import MemotionImageProcessor

REVISION = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["when the exam is on monday", "lol nice"]
#: The files each kind of folder cannot load without: all of them must be planned for upload.
NEEDED = {
    "text": {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"},
    "vision": {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"},
    "vise": {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"},
    "ensemble": {
        "config.json",
        "text/tokenizer.json",
        "text/tokenizer_config.json",
        "text/model.safetensors",
        "vision/model.safetensors",
        "vision/preprocessor_config.json",
    },
}


def _image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def folders(synthetic, tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    ensemble = build_tiny_ensemble(synthetic)
    ensemble.save_pretrained(root / "ensemble")
    ensemble.base_models["text"].save_pretrained(root / "text")
    ensemble.preprocessors["text"].save_pretrained(root / "text")
    ensemble.base_models["vision"].save_pretrained(root / "vision")
    ensemble.preprocessors["vision"].save_pretrained(root / "vision")
    torch.manual_seed(0)
    ViseModel(ViseConfig(architecture="test_resnet")).eval().save_pretrained(root / "vise")
    MemotionImageProcessor.from_timm("test_resnet", crop_size=32, ten_crop=False).save_pretrained(root / "vise")
    return root


def _publish_to_cache(folder: Path, cache: Path, repo_id: str) -> list[str]:
    """Lay out exactly the planned files as the Hub cache would hold them (blobs, a snapshot of links, refs)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    planned = []
    for item in upload_plan(folder):
        blob = repo / "blobs" / f"{abs(hash(item.path_in_repo)):x}{len(planned)}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.local_path, blob)
        link = repo / "snapshots" / REVISION / item.path_in_repo
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        planned.append(item.path_in_repo)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return planned


def _local_outputs(root: Path) -> dict[str, list]:
    image = _image()
    text_model = MemotionTextForSequenceClassification.from_pretrained(root / "text").eval()
    tokens = AutoTokenizer.from_pretrained(root / "text")(TEXTS, padding=True, return_tensors="pt")
    vision = AutoModelForImageClassification.from_pretrained(root / "vision").eval()
    pixels = AutoImageProcessor.from_pretrained(root / "vision")(image, return_tensors="pt")["pixel_values"]
    vise = AutoModel.from_pretrained(root / "vise").eval()
    vise_pixels = AutoImageProcessor.from_pretrained(root / "vise")(image, return_tensors="pt")["pixel_values"]
    pipe = pipeline("meme-emotion", model=str(root / "ensemble"), dtype=torch.float32)
    with torch.no_grad():
        return {
            "text": text_model(**tokens).logits.tolist(),
            "vision": vision(pixel_values=pixels).logits.tolist(),
            "vise": vise(pixel_values=vise_pixels).pooler_output.tolist(),
            "ensemble": pipe({"image": image, "text": TEXTS[0]})["sentiment"]["scores"],
        }


HUB_SIDE = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from PIL import Image
    from transformers import (AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                              AutoModelForSequenceClassification, AutoTokenizer, pipeline)
    import hf_memotion
    from hf_memotion.models.text import MemotionTextForSequenceClassification

    texts = %(texts)r
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    text_model = AutoModelForSequenceClassification.from_pretrained("org/text").eval()
    assert type(text_model) is MemotionTextForSequenceClassification
    MemotionTextForSequenceClassification.from_pretrained("org/text")
    tokens = AutoTokenizer.from_pretrained("org/text")(texts, padding=True, return_tensors="pt")
    vision = AutoModelForImageClassification.from_pretrained("org/vision").eval()
    pixels = AutoImageProcessor.from_pretrained("org/vision")(image, return_tensors="pt")["pixel_values"]
    vise = AutoModel.from_pretrained("org/vise").eval()
    vise_pixels = AutoImageProcessor.from_pretrained("org/vise")(image, return_tensors="pt")["pixel_values"]
    pipe = pipeline("meme-emotion", model="org/ensemble", dtype=torch.float32)
    with torch.no_grad():
        out = {
            "text": text_model(**tokens).logits.tolist(),
            "vision": vision(pixel_values=pixels).logits.tolist(),
            "vise": vise(pixel_values=vise_pixels).pooler_output.tolist(),
            "ensemble": pipe({"image": image, "text": texts[0]})["sentiment"]["scores"],
        }
    print("OUTPUTS " + json.dumps(out))
""")


def test_every_file_a_saved_folder_needs_is_planned(folders):
    for kind, needed in NEEDED.items():
        planned = {f.path_in_repo for f in upload_plan(folders / kind)}
        assert needed <= planned, (kind, needed - planned)
        on_disk = {p.relative_to(folders / kind).as_posix() for p in (folders / kind).rglob("*") if p.is_file()}
        assert planned == on_disk, (kind, on_disk - planned)  # nothing a saved folder holds is left behind


def test_published_folders_load_by_id_with_the_local_outputs(folders, tmp_path):
    cache = tmp_path / "hub"
    for kind in NEEDED:
        _publish_to_cache(folders / kind, cache, f"org/{kind}")
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", HUB_SIDE % {"texts": TEXTS}], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    hub = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("OUTPUTS "))[8:])
    local = _local_outputs(folders)
    for kind in ("text", "vision", "vise"):
        np.testing.assert_allclose(hub[kind], local[kind], rtol=1e-5, atol=1e-6, err_msg=kind)
    assert hub["ensemble"] == pytest.approx(local["ensemble"], abs=1e-6)


def test_credential_patterns_never_match_a_tokenizer(tmp_path):
    from transformers.tokenization_utils_base import ADDED_TOKENS_FILE, FULL_TOKENIZER_FILE, SPECIAL_TOKENS_MAP_FILE

    names = [
        FULL_TOKENIZER_FILE,
        "tokenizer_config.json",
        SPECIAL_TOKENS_MAP_FILE,
        ADDED_TOKENS_FILE,
        "vocab.txt",
        "merges.txt",
        "spiece.model",
        "tokenizer.model",
        "chat_template.jinja",
    ]
    secrets = ["token", "id_rsa", "hf_token", "my_token.txt", "server.pem", "aws_credentials.json", "api.key"]
    for name in names + secrets:
        (tmp_path / name).write_text("x")
    left_out: list[str] = []
    planned = {f.path_in_repo for f in upload_plan(tmp_path, plan_left_out=left_out)}
    assert set(names) <= planned
    assert sorted(left_out) == sorted(secrets)
