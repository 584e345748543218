"""The upstream projects' own test suites, fetched at test time and pinned to the installed releases.

Nothing of transformers' or timm's test code lives in this repository: :func:`upstream_tests` downloads the
source distribution of the *installed* version from PyPI (``pip download --no-binary :all:``), keeps only its
``tests/`` folder in a cache (``$HF_MEMOTION_UPSTREAM_CACHE``, default ``~/.cache/hf-memotion/upstream``) and
returns it. The sdist of transformers ships ``tests/test_modeling_common.py`` and ``test_configuration_common.py``
but not three helper modules they import; :func:`transformers_common` adds those as our own small modules:

- ``generation/test_utils.py``: an empty ``GenerationTesterMixin`` (our models do not generate text);
- ``exporters/test_export.py``: an ``ExportTesterMixin`` of our own, running ``torch.export`` on every model class
  of a tester and comparing with eager outputs (upstream's export tests are not in the sdist);
- ``utils/test_configuration_utils.py``: ``config_common_kwargs``, non-default values for ``PretrainedConfig``'s
  common fields (what upstream's file holds; these values are ours).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["transformers_common", "upstream_tests"]


def _cache_root() -> Path:
    return Path(os.environ.get("HF_MEMOTION_UPSTREAM_CACHE", Path.home() / ".cache" / "hf-memotion" / "upstream"))


def upstream_tests(distribution: str) -> Path:
    """The ``tests/`` folder of the installed ``distribution``'s sdist (downloaded once, then cached).

    Raises:
        RuntimeError: When PyPI cannot be reached and nothing is cached (the message says how to fix it).
    """
    version = importlib.metadata.version(distribution)
    target = _cache_root() / f"{distribution}-{version}"
    if (target / ".complete").exists():
        return target / "tests"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            scratch,
            f"{distribution}=={version}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        archives = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(
                f"could not download the {distribution}=={version} source distribution from PyPI for its test suite "
                f"({done.stderr.strip().splitlines()[-1:] or 'no archive'}); connect to PyPI, or put its tests/ "
                f"folder in {target / 'tests'} and create {target / '.complete'}"
            )
        staged = Path(scratch) / "staged"
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.split("/")[1:2] == ["tests"] and m.isfile()]
            archive.extractall(staged, members=members, filter="data")
        (tests,) = staged.glob("*/tests")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        tests.rename(target / "tests")
        (target / ".complete").touch()
    return target / "tests"


_EXPORT_MIXIN = '''\
"""Our stand-in for transformers' ExportTesterMixin (its tests/exporters/ is not in the sdist)."""

import torch


class ExportTesterMixin:
    def test_torch_export_matches_eager(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            inputs_for_class = self._prepare_for_class(inputs, model_class)
            with torch.no_grad():
                eager = model(**inputs_for_class)
                program = torch.export.export(model, args=(), kwargs=inputs_for_class, strict=False)
                exported = program.module()(**inputs_for_class)
            for key in ("logits", "last_hidden_state", "pooler_output"):
                if key in eager and eager[key] is not None:
                    torch.testing.assert_close(exported[key], eager[key], msg=f"{model_class.__name__}.{key}")
'''

_GENERATION_MIXIN = '''\
"""Our stand-in for transformers' GenerationTesterMixin: hf-memotion models do not generate text."""


class GenerationTesterMixin:
    pass
'''

_CONFIG_KWARGS = '''\
"""Non-default values of PretrainedConfig's common fields (ours; upstream's helper is not in the sdist)."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "tie_word_embeddings": False,
    "is_encoder_decoder": True,
    "chunk_size_feed_forward": 5,
    "architectures": ["MemotionProbe"],
    "finetuning_task": "meme-emotion",
    "id2label": {0: "label_a", 1: "label_b"},
    "label2id": {"label_a": 0, "label_b": 1},
    "problem_type": "single_label_classification",
    "tokenizer_class": "BertTokenizerFast",
    "prefix": "meme",
    "bos_token_id": 6,
    "pad_token_id": 7,
    "eos_token_id": 8,
    "sep_token_id": 9,
    "decoder_start_token_id": 10,
}
'''


def transformers_common():
    """Import transformers' ``test_modeling_common`` and ``test_configuration_common`` of the installed release.

    Returns:
        ``(test_modeling_common, test_configuration_common)`` modules.
    """
    tests = upstream_tests("transformers")
    package = tests.parent / "transformers_upstream"
    if not (package / "__init__.py").exists():
        staging = tests.parent / "transformers_upstream.partial"
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(tests, staging)
        for folder, name, text in [
            ("exporters", "test_export.py", _EXPORT_MIXIN),
            ("generation", "test_utils.py", _GENERATION_MIXIN),
            ("utils", "test_configuration_utils.py", _CONFIG_KWARGS),
        ]:
            (staging / folder).mkdir(exist_ok=True)
            (staging / folder / "__init__.py").touch()
            if not (staging / folder / name).exists():
                (staging / folder / name).write_text(text)
        (staging / "__init__.py").touch()
        staging.rename(package)
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    modeling = importlib.import_module("transformers_upstream.test_modeling_common")
    configuration = importlib.import_module("transformers_upstream.test_configuration_common")
    return modeling, configuration
