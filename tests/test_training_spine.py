"""The training spine: one Trainer subclass and one arguments class, stock fields from every config, typed specs
whose errors name file, section, key and suggestion, cards written by the model, and no import cycles."""

import ast
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

import hf_memotion  # registers the Auto classes
from hf_memotion.cards import score_name
from hf_memotion.data import load_memotion, make_demo_data
from hf_memotion.models.text import MemotionTextConfig, MemotionTextForSequenceClassification
from hf_memotion.models.text.preprocessing import prepare_text_dataset
from hf_memotion.models.text.tiny import build_tiny_text_backbone
from hf_memotion.recipe.specs import EnsembleRunSpec, MemberRunSpec
from hf_memotion.specs import SpecError
from hf_memotion.training import ClassifierTrainingArguments, MemotionTrainer, build_training_arguments
from hf_memotion.training.trainer import make_compute_metrics
from hf_memotion.vise.specs import EvaluationRunSpec, MiningRunSpec, PretrainRunSpec

SRC = Path(hf_memotion.__file__).resolve().parent
ROOT = SRC.parents[1]
STOCK = {"bf16": True, "dataloader_num_workers": 2}


# ------------------------------------------------------------------------------------------------ layout


def _imports(path: Path, module: str) -> set[str]:
    """Every hf_memotion module ``path`` imports, at module level or inside functions (relative ones resolved).

    Imports under ``if TYPE_CHECKING:`` never run (annotations only) and are left out.
    """
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name.startswith("hf_memotion.")}


def test_no_import_cycle_between_packages_function_level_imports_included():
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "hf_memotion":
            continue  # the root package imports everything it exports
        source = module.split(".")[1]
        targets = {name.split(".")[1] for name in _imports(path, module)} - {source}
        graph.setdefault(source, set()).update(targets)
    assert {"training", "vise", "models", "cards", "data"} <= set(graph)
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert "training" not in graph["cards"] and "training" not in graph["models"]  # cards and models know no trainer


def _module_graph() -> dict[str, set[str]]:
    """Module (file) -> the hf_memotion modules it names in an import (a name imported from a package counts when
    it is a submodule of that package)."""
    files = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        if module == "hf_memotion":
            continue  # the root package names what it exports (lazily)
        targets = set()
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            for inner in ast.walk(node)
        }  # imports for annotations only never run
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                names = [f"{base}.{alias.name}" for alias in node.names]
                targets |= {n for n in names if n in files} or {base}
        graph[module] = {t for t in targets if t in files and t != module and t != "hf_memotion"}
    return graph


def test_no_import_cycle_between_files_function_level_imports_included():
    graph = _module_graph()
    assert len(graph) > 60
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                path = [*trail, node]
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles between files:\n" + "\n".join(cycles)


def test_one_arguments_module_and_one_trainer_subclass():
    constructed, subclasses = set(), set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith((">>>", "...", "#")))
        if re.search(r"\b(Memotion)?TrainingArguments\(", code):  # not ClassifierTrainingArguments(...)
            constructed.add(path.relative_to(SRC).as_posix())
        subclasses |= set(re.findall(r"^class (\w+)\([^)]*\bTrainer\)", code, flags=re.M))
    assert constructed == {"training/arguments.py"}
    assert subclasses == {"MemotionTrainer"}


def test_scripts_only_parse_and_call_the_library():
    for script in (
        "train",
        "train_text",
        "train_vision",
        "make_demo_data",
        "mine_vise_labels",
        "pretrain_vise",
        "evaluate_vise",
    ):
        lines = (ROOT / "scripts" / f"{script}.py").read_text().splitlines()
        assert len(lines) <= 60, script
        assert sum(line.startswith("def ") for line in lines) == 1, script  # main() only


# ------------------------------------------------------------------------------------------------ stock fields


class _Stop(Exception):
    """Raised instead of training: the arguments that reached the Trainer are recorded."""


@pytest.fixture
def captured(monkeypatch):
    seen = []

    def record(self, *args, **kwargs):
        seen.append(self.args)
        raise _Stop

    monkeypatch.setattr(MemotionTrainer, "train", record)
    return seen


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("spine") / "demo", n_train=24, n_test=8)


def test_stock_fields_of_a_training_section_reach_the_trainer_for_text_and_vision(demo, tmp_path, captured):
    from hf_memotion.recipe.ensemble_recipe import run_training

    config = {
        "data": {"path": str(demo)},
        "output_dir": str(tmp_path),
        "n_splits": 2,
        "models": [
            {
                "name": "t",
                "family": "text",
                "problems": ["humour"],
                "training": {"epochs": 1, **STOCK},
                "tiny": {"hidden_size": 16, "num_layers": 1},
            },
            {
                "name": "v",
                "family": "vision",
                "problems": ["humour"],
                "processor": {"crop_size": 32},
                "training": {"epochs": 1, "optimizer": "sgd", "learning_rate": 0.01, **STOCK},
            },
        ],
    }
    with pytest.raises(_Stop):
        run_training(config)
    with pytest.raises(_Stop):
        run_training({**config, "models": config["models"][1:]})
    assert len(captured) == 2
    for args in captured:
        assert args.bf16 is True and args.dataloader_num_workers == 2
    # text: a fold picks its best epoch on held-out rows, one weights-only checkpoint at a time; vision under the
    # paper's defaults trains its epochs with no selection and writes no checkpoint
    assert captured[0].save_total_limit == 1 and captured[0].save_only_model and captured[0].load_best_model_at_end
    assert str(captured[1].save_strategy.value) == "no" and captured[1].max_grad_norm == 0.0
    assert str(captured[1].optim.value) == "sgd" and captured[1].momentum == 0.95


def test_stock_fields_reach_the_trainer_for_vise_pretraining_and_finetuning(tmp_path, captured):
    from hf_memotion.vise.commands import evaluate, mine, pretrain

    mining = {
        "data": {"demo": {"output_dir": str(tmp_path / "posts"), "n_posts": 120, "n_shards": 2}},
        "output_dir": str(tmp_path / "mined"),
        "mining": {"comment_clusters": 6, "reaction_clusters": 3, "embedding_dim": 8},
    }
    mine(MiningRunSpec.from_dict(mining))
    spec = PretrainRunSpec.from_dict(
        {
            "data": {"labels": str(tmp_path / "mined")},
            "output_dir": str(tmp_path / "pre"),
            "pretraining": {
                "architecture": "test_resnet",
                "image_size": 32,
                "batch_size": 8,
                "max_steps": 2,
                "save_total_limit": 5,
                **STOCK,
            },
        }
    )
    with pytest.raises(_Stop):
        pretrain(spec)
    args = captured[-1]
    assert args.bf16 and args.dataloader_num_workers == 2 and args.save_total_limit == 5
    assert args.loss_terms == ["comment_loss", "reaction_loss"] and args.max_grad_norm == 0.0
    evaluation = EvaluationRunSpec.from_dict(
        {
            "output_dir": str(tmp_path / "eval"),
            "backbones": {"random": "random:test_resnet"},
            "image_size": 32,
            "protocols": ["finetune"],
            "finetune": {"epochs": 1, "batch_size": 8, **STOCK},
            "tasks": [
                {
                    "format": "unbiased_emotion",
                    "demo": {"output_dir": str(tmp_path / "ue"), "n_per_class": 4},
                    "options": {"n_splits": 1},
                }
            ],
        }
    )
    with pytest.raises(_Stop):
        evaluate(evaluation)
    args = captured[-1]
    assert args.bf16 and args.dataloader_num_workers == 2 and args.decay_all_parameters
    assert args.lr_milestone_unit == "fraction"


def test_build_training_arguments_splits_the_global_batch_and_keeps_stock_fields(tmp_path):
    args = build_training_arguments(tmp_path, batch_size=64, gradient_accumulation_steps=2, fp16=False, seed=3)
    assert args.per_device_train_batch_size == 32 and args.seed == 3 and args.report_to == []
    with pytest.raises(ValueError, match="not a multiple"):
        build_training_arguments(tmp_path, batch_size=7, gradient_accumulation_steps=2, strict_batch=True)
    with pytest.raises(SpecError, match="section 'training': unknown key 'per_device_train_batch_size'"):
        ClassifierTrainingArguments.from_dict({"per_device_train_batch_size": 8})  # the library's batch_size is global


# ------------------------------------------------------------------------------------------------ specs


@pytest.mark.parametrize(
    ("spec", "values", "section", "key", "suggestion"),
    [
        (EnsembleRunSpec, {"n_split": 3}, "top level", "n_split", "n_splits"),
        (
            EnsembleRunSpec,
            {"models": [{"name": "a", "training": {"epoch": 3}}]},
            "section 'models.0.training'",
            "epoch",
            "epochs",
        ),
        (EnsembleRunSpec, {"stacking": {"method": ["average"]}}, "section 'stacking'", "method", "methods"),
        (EnsembleRunSpec, {"models": [{"name": "a", "bakbone": "x"}]}, "section 'models.0'", "bakbone", "backbone"),
        (MemberRunSpec, {"search": {"n_trial": 3}}, "section 'search'", "n_trial", "n_trials"),
        (
            MemberRunSpec,
            {"family": "vision", "search": {"learning_rates": [0.1]}},
            "section 'search'",
            "learning_rates",
            "learning_rate",
        ),
        (MemberRunSpec, {"family": "vision", "backbone": "x"}, "top level", "backbone", "vise_backbone"),
        (MiningRunSpec, {"mining": {"comment_cluster": 5}}, "section 'mining'", "comment_cluster", "comment_clusters"),
        (PretrainRunSpec, {"pretraining": {"bacth_size": 5}}, "section 'pretraining'", "bacth_size", "batch_size"),
        (PretrainRunSpec, {"data": {"label": "x"}}, "section 'data'", "label", "labels"),
        (
            EvaluationRunSpec,
            {"backbones": {"a": "random:resnet18"}, "tasks": [{"fromat": "cub", "path": "x"}]},
            "section 'tasks.0'",
            "fromat",
            "format",
        ),
        (EvaluationRunSpec, {"linear": {"batchsize": 3}}, "section 'linear'", "batchsize", "batch_size"),
    ],
)
def test_a_misspelt_key_is_one_line_naming_file_section_key_and_suggestion(spec, values, section, key, suggestion):
    with pytest.raises(SpecError) as raised:
        spec.from_dict(values, source="run.yaml")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"run.yaml, {section}: unknown key '{key}' (did you mean '{suggestion}'?)"), message


def test_a_misspelt_data_key_is_named_by_every_script(tmp_path):
    from hf_memotion.data.loading import load_data

    with pytest.raises(SpecError, match=r"run.yaml, section 'data': unknown key 'test_pth' \(did you mean 'test_path'"):
        load_data({"path": "x", "test_pth": "y"}, source="run.yaml")


def test_every_shipped_config_reads_into_its_spec():
    from hf_memotion.data.demo import DemoDataRunSpec

    specs = {
        "demo": EnsembleRunSpec,
        "paper": EnsembleRunSpec,
        "text_demo": MemberRunSpec,
        "text_paper": MemberRunSpec,
        "vision_demo": MemberRunSpec,
        "vision_paper": MemberRunSpec,
        "vise_mining_demo": MiningRunSpec,
        "vise_pretrain_demo": PretrainRunSpec,
        "vise_eval_demo": EvaluationRunSpec,
        "vise_eval_paper": EvaluationRunSpec,
        "vise_mining_paper": MiningRunSpec,
        "vise_pretrain_paper": PretrainRunSpec,
        "demo_joint": EnsembleRunSpec,
        "modern": EnsembleRunSpec,
    }
    assert {p.stem for p in (ROOT / "configs").glob("*.yaml")} == set(specs)  # every shipped config is read here
    for name, spec in specs.items():
        values = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        values.pop("push_to_hub", None)
        spec.from_dict(values, source=name)
    DemoDataRunSpec.from_dict(yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text()))


# ------------------------------------------------------------------------------------------------ cards


def test_a_model_trained_with_the_trainer_writes_its_card_with_the_metrics_on_save(demo, tmp_path):
    data = load_memotion(demo)["train"]
    backbone, tokenizer = build_tiny_text_backbone("bert", data["text"], hidden_size=16, num_layers=1)
    model = MemotionTextForSequenceClassification(
        MemotionTextConfig(text_config=backbone, problems=["humour"], lstm_hidden_size=8, attention_size=8, ffn_size=8)
    )
    rows = prepare_text_dataset(data, tokenizer, ["humour"], 32)
    args = ClassifierTrainingArguments(epochs=2, batch_size=8, learning_rate=1e-3).to_training_arguments(
        tmp_path / "run", with_eval=True
    )
    trainer = MemotionTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(model.config.problem_labels),
    )
    trainer.train()
    metrics = trainer.evaluate()
    model.save_pretrained(tmp_path / "saved")  # no recipe involved
    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.pipeline_tag == "text-classification"
    [result] = card.data.eval_results
    assert result.metric_name == score_name("humour") and result.dataset_split == "validation"
    assert result.metric_value == pytest.approx(metrics["eval_f1_humour"], abs=1e-4)
    assert f"| eval_macro_f1 | {round(metrics['eval_macro_f1'], 4)} |" in card.text
    assert "| learning_rate | 0.001 |" in card.text and "MemotionTrainer" in card.text
    # loading and saving again keeps the card; a model that knows nothing of its training still gets one
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "README.md").read_text() == (tmp_path / "saved" / "README.md").read_text()
    fresh = MemotionTextForSequenceClassification(model.config)
    fresh.save_pretrained(tmp_path / "fresh")
    assert ModelCard.load(tmp_path / "fresh" / "README.md").data.library_name == "hf-memotion"
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model_type"] == "memotion_text"
    key = "heads.classifiers.humour.weight"
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])


def test_a_mistyped_value_is_one_line_too():
    with pytest.raises(SpecError, match=r"^run.yaml, section 'models.0.training': 'epochs' must be a number, got 'x'$"):
        EnsembleRunSpec.from_dict({"models": [{"name": "a", "training": {"epochs": "x"}}]}, source="run.yaml")
    with pytest.raises(
        SpecError, match=r"^run.yaml, section 'pretraining': 'bf16' must be true or false or 'auto', got 'yes'$"
    ):
        PretrainRunSpec.from_dict({"pretraining": {"bf16": "yes"}}, source="run.yaml")
    with pytest.raises(SpecError, match="'num_proc' must be an integer"):
        MiningRunSpec.from_dict({"num_proc": 1.5})
    with pytest.raises(SpecError, match=r"'learning_rate' must be a number, got \[0.1, 0.01\]; a list of learning"):
        MemberRunSpec.from_dict({"family": "vision", "training": {"learning_rate": [0.1, 0.01]}})
    spec = MemberRunSpec.from_dict({"family": "vision", "search": {"learning_rate": [0.1, 0.01]}})
    assert spec.search.learning_rate == [0.1, 0.01] and spec.training.learning_rate == 0.01  # the paper's default


# ------------------------------------------------------------------------------------------------ cross-validation


def test_cross_validator_is_an_object_with_a_pluggable_trainer_and_resumable_folds(demo, tmp_path):
    from hf_memotion.models.heads import resolve_problem_labels
    from hf_memotion.training import CrossValidator, fit_classifier

    data = load_memotion(demo)["train"]
    backbone, tokenizer = build_tiny_text_backbone("bert", data["text"], hidden_size=16, num_layers=1)
    config = MemotionTextConfig(
        text_config=backbone, problems=["humour"], lstm_hidden_size=8, attention_size=8, ffn_size=8
    )
    calls = []

    def factory(model, train_rows, stop_rows, training, output_dir, data_collator=None):
        calls.append((len(train_rows), stop_rows is None))
        return fit_classifier(model, train_rows, stop_rows, training, output_dir, data_collator=data_collator)

    labels = resolve_problem_labels(["humour"])
    validator = CrossValidator(
        lambda: MemotionTextForSequenceClassification(config),
        labels,
        ClassifierTrainingArguments(epochs=1, batch_size=8),
        n_splits=2,
        run_key="k",
        data_collator=DataCollatorWithPadding(tokenizer),
        trainer_factory=factory,
    )
    rows = prepare_text_dataset(data, tokenizer, ["humour"], 32)
    result = validator.run(rows, tmp_path / "folds")
    assert result.oof_probabilities["humour"].shape == (len(data), 2) and result.model is not None
    assert [refit for _, refit in calls] == [False, False, True]  # two folds with early-stopping rows, then the refit
    again = validator.run(rows, tmp_path / "folds", refit=False)  # the folds are finished: nothing trains
    assert len(calls) == 3  # saved as float32:
    assert again.oof_probabilities["humour"] == pytest.approx(result.oof_probabilities["humour"], abs=1e-6)


def test_trainers_of_different_precisions_follow_each_other_in_one_process(tmp_path):
    from accelerate.state import PartialState

    processes = PartialState().num_processes
    for precision in ({"bf16": True}, {}, {"bf16": True}):
        args = build_training_arguments(tmp_path, batch_size=2, max_steps=1, **precision)
        trainer = MemotionTrainer(model=torch.nn.Linear(2, 2), args=args)  # accelerate refused the second one
        assert trainer.accelerator.mixed_precision == ("bf16" if precision else "no")
    assert PartialState().num_processes == processes  # the process group is kept
