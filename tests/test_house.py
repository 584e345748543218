"""The house a newcomer carries on: one naming rule for settings classes, a small public API loaded lazily (with
registration intact), a front-page README, no formatter escapes, and a documentation site where every public class
has a page."""

import dataclasses
import importlib
import json
import pkgutil
import subprocess
import sys
import typing
import warnings
from pathlib import Path

import pytest
from transformers import PretrainedConfig, TrainingArguments

import hf_memotion
from hf_memotion.training.arguments import TakesTrainingArguments

SRC = Path(hf_memotion.__file__).resolve().parent
ROOT = SRC.parents[1]
#: Modules that need an optional program or package to import (their classes are checked where it is present).
OPTIONAL = {"hf_memotion.vise.spark_mining": "pyspark"}


def _modules():
    for info in pkgutil.walk_packages([str(SRC)], prefix="hf_memotion."):
        needs = OPTIONAL.get(info.name)
        if needs and importlib.util.find_spec(needs) is None:
            continue
        yield importlib.import_module(info.name)


def _classes():
    """Every class the library defines (once, in its defining module)."""
    seen = {}
    for module in _modules():
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                seen[f"{module.__name__}.{value.__qualname__}"] = value
    return seen


def _run_spec_sections():
    """Every dataclass a script's config is read into: the *RunSpec classes and their nested sections."""
    found = {}

    def walk(cls):
        if cls.__name__ in found:
            return
        found[cls.__name__] = cls
        for hint in typing.get_type_hints(cls).values():
            for inner in [
                hint,
                *typing.get_args(hint),
                *(a for h in typing.get_args(hint) for a in typing.get_args(h)),
            ]:
                if isinstance(inner, type) and dataclasses.is_dataclass(inner):
                    walk(inner)

    for cls in _classes().values():
        if dataclasses.is_dataclass(cls) and cls.__name__.endswith("RunSpec"):
            walk(cls)
    return found


def test_settings_classes_follow_one_naming_rule():
    classes = _classes()
    configs = sorted(n for n, c in classes.items() if issubclass(c, PretrainedConfig))
    arguments = sorted(n for n, c in classes.items() if issubclass(c, TrainingArguments | TakesTrainingArguments))
    sections = _run_spec_sections()
    listing = {"Config": configs, "Arguments": arguments, "Spec": sorted(sections)}
    print(json.dumps(listing, indent=1))  # the settings classes and their suffixes
    assert all(name.endswith("Config") for name in configs)
    assert all(name.endswith("Arguments") for name in arguments if not name.endswith("TakesTrainingArguments"))
    for name, cls in sections.items():
        expected = "Arguments" if issubclass(cls, TakesTrainingArguments) else "Spec"
        assert name.endswith(expected), f"{name}: a YAML section is *{expected}"
    # no other suffix is left, and *Config means a PretrainedConfig only
    for name, cls in classes.items():
        short = name.rsplit(".", 1)[-1]
        assert not short.endswith(("Settings", "Options")), name
        if short.endswith("Config"):
            assert issubclass(cls, PretrainedConfig), f"{name} ends with Config but is no PretrainedConfig"
    assert {"SearchSpec", "BaseModelSpec", "MiningSpec"} <= set(sections)
    assert any(name.endswith(".ClassifierTrainingArguments") for name in arguments)


def test_old_names_still_import_with_a_deprecation_warning():
    from hf_memotion.training.trainer import ClassifierTrainingArguments

    with pytest.warns(FutureWarning, match="ClassifierTrainingConfig is deprecated: use ClassifierTrainingArguments"):
        from hf_memotion.training.trainer import ClassifierTrainingConfig
    assert ClassifierTrainingConfig is ClassifierTrainingArguments
    with pytest.warns(FutureWarning, match=r"hf_memotion.PROBLEM_NAMES moved: use `from hf_memotion.tasks import"):
        assert hf_memotion.PROBLEM_NAMES[0] == "sentiment"
    with pytest.warns(FutureWarning, match="MiningConfig is deprecated"):
        from hf_memotion.vise.mining import MiningConfig  # noqa: F401


def test_the_top_level_is_small_and_every_name_resolves():
    assert len(hf_memotion.__all__) <= 25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in hf_memotion.__all__:
            assert getattr(hf_memotion, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hf_memotion.nothing  # noqa: B018


_LAZY = """
import sys, time
start = time.perf_counter()
import hf_memotion
took = time.perf_counter() - start
heavy = sorted(m for m in ("torch", "transformers", "datasets", "sklearn") if m in sys.modules)
from transformers import AutoConfig, AutoModel
config = AutoConfig.for_model("vise")
from transformers.pipelines import PIPELINE_REGISTRY
from transformers import pipeline
print(took, heavy, type(config).__name__, AutoModel._model_mapping[type(config)].__name__,
      "meme-emotion" in PIPELINE_REGISTRY.get_supported_tasks())
"""


def test_import_is_lazy_and_registration_waits_for_transformers():
    out = subprocess.run([sys.executable, "-c", _LAZY], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["[]", "ViseConfig", "ViseModel", "True"], out  # no torch on import, registered on use


def test_polynet_joins_timm_when_timm_is_imported_after_hf_memotion():
    code = "import hf_memotion\nimport timm\nprint('polynet' in timm.list_models('polynet'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_registration_after_a_model_package_is_imported_first():
    code = (
        "import hf_memotion.models.text\n"
        "from transformers import AutoConfig\n"
        "print(type(AutoConfig.for_model('memotion_ensemble')).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "MemotionEnsembleConfig"


def test_front_page_readme_and_no_formatter_escapes():
    assert len((ROOT / "README.md").read_text().splitlines()) < 250
    escapes = [str(p.relative_to(ROOT)) for p in SRC.rglob("*.py") if "fmt: skip" in p.read_text()]
    assert not escapes


def test_documentation_site_builds_strictly_with_a_page_per_public_class(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') builds the site")
    pytest.importorskip("mkdocs_gen_files", reason="the docs extra builds the site")
    site = tmp_path / "site"
    env = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true", "PATH": "/usr/bin:/bin"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    missing = []
    for name in _classes():
        module, _, short = name.rpartition(".")
        public = short in getattr(sys.modules[module], "__all__", ())
        if public and not short.startswith("_"):
            page = site / "reference" / Path(*module.split(".")) / short / "index.html"
            if not page.is_file() or short not in page.read_text():
                missing.append(name)
    assert not missing, f"public classes without an API page: {missing}"
    assert (site / "reference" / "hf_memotion" / "models" / "text" / "modeling_memotion_text").is_dir()
