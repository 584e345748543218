"""The house a newcomer carries on: one naming rule for settings classes, a small public API with one list of its
names, one registration on import (no import hook), no deprecation shims, a front-page README, no formatter escapes,
and a documentation site where every public class has a page."""

import ast
import dataclasses
import importlib
import json
import pkgutil
import re
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

    from hf_memotion.families import get_family, registered_families

    for cls in _classes().values():
        if dataclasses.is_dataclass(cls) and cls.__name__.endswith("RunSpec"):
            walk(cls)
    for name in registered_families():  # a model entry's section is its family's
        walk(get_family(name).spec_class)
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
    expected = {"StudySpec", "GridSpec", "MemberSpec", "TextMemberSpec", "VisionMemberSpec", "MiningSpec"}
    assert expected <= set(sections)
    assert any(name.endswith(".ClassifierTrainingArguments") for name in arguments)


def test_no_shims_are_left():
    """No renamed name is served under its old one; no module keeps a renaming table or warns of a move."""
    with pytest.raises(ImportError):
        from hf_memotion.training.trainer import ClassifierTrainingConfig  # noqa: F401
    with pytest.raises(AttributeError):
        hf_memotion.PROBLEM_NAMES  # noqa: B018
    found = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if "deprecated_names" in text or "spec_renamed" in text or "FutureWarning" in text:
            found.append(str(path.relative_to(SRC)))
    assert not found


def test_one_list_of_public_names_agrees_with_all_the_lazy_table_the_type_imports_and_the_docs():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from gen_reference import public_objects
    finally:
        sys.path.remove(str(ROOT / "docs"))
    exports = hf_memotion._EXPORTS
    assert sorted(hf_memotion.__all__) == sorted([*exports, "__version__"])
    tree = ast.parse((SRC / "__init__.py").read_text())
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for item in node.body:
                typed.update({alias.name: item.module for alias in item.names})
    assert typed == exports  # the type checkers see each name where the lazy table finds it
    documented = public_objects()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, module in exports.items():
            value = getattr(hf_memotion, name)
            assert value is not None and value.__module__ == module, name
            assert name in [n for n, _ in documented[module]], f"{module}.{name} has no API page"
    assert len(exports) <= 30
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hf_memotion.nothing  # noqa: B018


_REGISTERED = """
import sys
import hf_memotion
from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
import timm
hooks = [type(f).__name__ for f in sys.meta_path if type(f).__module__.startswith("hf_memotion")]
config = AutoConfig.for_model("vise")
print(hooks, type(config).__name__, AutoModel._model_mapping[type(config)].__name__,
      "meme-emotion" in PIPELINE_REGISTRY.get_supported_tasks(), "polynet" in timm.list_models("polynet"),
      sorted(hf_memotion.families.registered_families()))
"""


def test_import_registers_once_with_no_import_hook():
    out = subprocess.run([sys.executable, "-c", _REGISTERED], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "ViseConfig", "ViseModel", "True", "True", "['multimodal',", "'text',", "'vision']"]


def test_a_model_package_imported_first_finds_everything_registered():
    code = (
        "import hf_memotion.models.text\n"
        "from transformers import AutoConfig\n"
        "print(type(AutoConfig.for_model('memotion_ensemble')).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "MemotionEnsembleConfig"


def test_modality_strings_are_compared_in_at_most_five_places():
    """The recipe, selection, planning, the ensemble, explanations and ONNX ask the family, never compare names."""
    names = "(text|vision|multimodal)"
    pattern = re.compile(
        rf"""[=!]=\s*["']{names}["']|["']{names}["']\s*[=!]=|\bin\s*\(["']{names}["']|\bmodality\s*([=!]=|in\b)"""
        rf"""|\[["']modality["']\]|\.family\s*([=!]=|in\b)"""
    )
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith(("#", ">>>"))
    ]
    print("\n".join(found))
    assert len(found) <= 5, found


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


def test_security_names_a_test_for_every_promise_and_every_named_test_exists():
    """SECURITY.md lists each promise with the test that holds it: each named test exists, and every hostile-folder
    test is named there."""
    text = (ROOT / "SECURITY.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) >= 40
    defined: dict[str, set[str]] = {}
    for file, test in named:
        if file not in defined:
            tree = ast.parse((ROOT / file).read_text())
            defined[file] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert test in defined[file], f"SECURITY.md names {file}::{test}, which does not exist"
    hostile = ast.parse((ROOT / "tests" / "test_hostile_folders.py").read_text())
    tests = {n.name for n in hostile.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    assert tests <= {t for f, t in named if f == "tests/test_hostile_folders.py"}
