"""The ensemble recipe at the paper's protocol: selection inside it, the paper's options, jobs on Ray."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from hf_memotion.data import load_memotion, make_demo_data
from hf_memotion.recipe.ensemble_recipe import run_training
from hf_memotion.recipe.specs import EnsembleRunSpec, MemberRunSpec
from hf_memotion.recipe.splits import RecipeData
from hf_memotion.specs import SpecError
from hf_memotion.training import cross_validation
from hf_memotion.training.trainer import MemotionTrainer, StopAfterEpochs

TINY_TEXT = {
    "tiny": {"hidden_size": 16, "num_layers": 1},
    "model": {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8, "max_length": 16},
}
TEXT_TRAINING = {"optimizer": "adam", "learning_rate": 0.003, "epochs": 2, "batch_size": 16}
VISION = {"architecture": "test_resnet", "processor": {"crop_size": 32}, "ten_crop": False}
VISION_TRAINING = {"optimizer": "sgd", "learning_rate": 0.05, "epochs": 2, "batch_size": 32, "lr_milestones": [1]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("protocol") / "demo", n_train=60, n_test=20, image_size=64)


@pytest.fixture
def fits(monkeypatch):
    """Every training the recipe runs: (modality, rows, early-stopping rows or None, epochs, callbacks)."""
    seen = []
    real = cross_validation.fit_classifier

    def record(model, train_rows, stop_rows, training, output_dir, **kwargs):
        modality = "vision" if "Vision" in type(model).__name__ else "text"
        seen.append((modality, len(train_rows), stop_rows, training.epochs, kwargs.get("callbacks") or []))
        return real(model, train_rows, stop_rows, training, output_dir, **kwargs)

    monkeypatch.setattr(cross_validation, "fit_classifier", record)
    return seen


def _config(demo, output, models, **extra):
    return {
        "data": {"path": str(demo)},
        "output_dir": str(output),
        "n_splits": 2,
        "models": models,
        "stacking": {"methods": ["average", "logistic_regression"]},
        "bf16_check": False,
        **extra,
    }


@pytest.mark.slow
def test_search_in_the_recipe_picks_per_problem_keeps_the_winners_folds_and_one_row_per_backbone(demo, tmp_path, fits):
    models = [
        {"name": "text", "family": "text", **TINY_TEXT, "training": TEXT_TRAINING},
        {
            "name": "vision",
            "family": "vision",
            "layout": "per_problem",
            "problems": ["sentiment", "motivational"],
            **VISION,
            "training": VISION_TRAINING,
            "search": {"learning_rate": [1e-6, 0.05]},
        },
        {
            "name": "tuned",
            "family": "text",
            "layout": "per_problem",
            "problems": ["sentiment", "humour"],
            **TINY_TEXT,
            "training": TEXT_TRAINING,
            "search": {"n_trials": 2, "space": {"learning_rate": [1e-3, 1e-2]}},
        },
    ]
    report = run_training(_config(demo, tmp_path, models))
    # 3 (text: 2 folds + refit) + 2 problems x (2 rates x 2 folds + refit) + 2 problems x (2 trials x 2 folds + refit)
    assert len(fits) == 3 + 10 + 10 and sum(f[0] == "vision" for f in fits) == 10
    assert report["protocol"]["trainings"] == 23
    assert set(report["search"]) == {"vision-sentiment", "vision-motivational", "tuned-sentiment", "tuned-humour"}
    models_dir = tmp_path / "models"
    for name, search in report["search"].items():
        assert len(search["candidates"]) == 2 and search["score"] == max(c["score"] for c in search["candidates"])
        chosen = search["chosen"]
        if name.startswith("vision"):
            source = models_dir / name / "search" / f"lr_{chosen['learning_rate']:g}"
        else:
            trial = next(c for c in search["candidates"] if c["values"] == chosen)
            source = models_dir / name / "search" / f"trial_{search['candidates'].index(trial)}"
        for fold in (0, 1):  # the model's folds are the winner's, byte for byte: no fold trained twice
            mine = (models_dir / name / "folds" / f"fold_{fold}" / "oof.safetensors").read_bytes()
            assert mine == (source / "folds" / f"fold_{fold}" / "oof.safetensors").read_bytes()
        metrics = json.loads((models_dir / name / "metrics.json").read_text())
        assert metrics["selection"]["chosen"] == chosen
        saved = json.loads((models_dir / name / "model" / "config.json").read_text())
        assert saved["problems"] == [name.split("-")[1]]
        card = (models_dir / name / "model" / "README.md").read_text()
        assert "The settings were selected by" in card and f"{search['score']:.4f}"[:5] in card
    assert [row["name"] for row in report["table7"]][:3] == ["text", "vision", "tuned"]  # one row per backbone
    assert set(report["table7"][1]["selected"]) == {"vision-sentiment", "vision-motivational"}
    assert "## Hyperparameters selected per model" in (tmp_path / "report.md").read_text()
    again = run_training(_config(demo, tmp_path, models))  # finished: read back, nothing trains
    assert len(fits) == 23 and again["table7"] == report["table7"]


@pytest.mark.slow
def test_the_papers_protocol_options(demo, tmp_path, fits):
    models = [
        {
            "name": "text",
            "family": "text",
            "layout": "per_problem",
            **TINY_TEXT,
            "training": {**TEXT_TRAINING, "epochs": 3, "refit_schedule": "fold", "early_stopping_patience": 1},
        },
        {"name": "vision", "family": "vision", **VISION, "training": VISION_TRAINING},
    ]
    config = _config(
        demo,
        tmp_path,
        models,
        share_motivational=True,
        evaluation={
            "split": "dev",
            "dev_fraction": 0.25,
            "test_time": "fold_average",
            "fold_mean_rows": True,
            "columns": "paper",
        },
    )
    report = run_training(config)
    assert report["n_train"] == 45 and report["n_test"] == 15  # a dev quarter of the 60 training memes
    trained = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert "text-motivational" in trained and "text-motivational_intensity" not in trained  # 8 text models, not 9
    assert len(trained) == 9
    vision_fits = [f for f in fits if f[0] == "vision"]  # the paper's visual defaults: every row, no epoch selection
    assert len(vision_fits) == 3 and all(stop is None for _, _, stop, _, _ in vision_fits)
    assert sorted(rows for _, rows, *_ in vision_fits) == [22, 23, 45]
    text_fits = [f for f in fits if f[0] == "text"]
    assert len(text_fits) == 8 * 3 and sum(stop is not None for _, _, stop, _, _ in text_fits) == 8 * 2
    refits = [f for f in text_fits if f[2] is None]
    assert all(epochs == 3 for _, _, _, epochs, _ in refits)  # the refit keeps the folds' 3-epoch schedule ...
    stopped = [c for *_, callbacks in refits for c in callbacks if isinstance(c, StopAfterEpochs)]
    assert all(c.epochs < 3 for c in stopped)  # ... and stops at their median best epoch when it came earlier
    # ... fold_average: the held-out probabilities are the mean of the fold models'
    folder = tmp_path / "models" / "vision"
    folds = [load_file(folder / "folds" / f"fold_{k}" / "oof.safetensors") for k in (0, 1)]
    mean = (folds[0]["test.humour"] + folds[1]["test.humour"]) / 2
    np.testing.assert_allclose(load_file(folder / "test_probabilities.safetensors")["humour"], mean, atol=1e-6)
    ensemble = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    entry = next(e for e in ensemble["base_models"] if e["name"] == "text-motivational")
    assert entry["aliases"] == {"motivational_intensity": "motivational"}
    assert "motivational_intensity" in entry["problems"]
    rows = {r["name"]: r["scores"] for r in report["table7"]}
    assert rows["text"]["motivational"] == rows["text"]["motivational_intensity"]  # one model serves both
    # ... but the visual member predicts motivational_intensity with a head of its own: the stackers' inputs differ,
    # so each subtask's meta-estimator is its own choice, and the report says why
    assert report["table8_shared"] == {}
    header = (tmp_path / "report.md").read_text()
    assert "its meta-estimator chosen per subtask (Table 8): another member predicts the two apart" in header
    assert "| B humo. | B offe. | B sarc. | B moti. |" in header and "mean of the fold models" in header
    # Table 7's single-model rows are the refit models, scored as one model; the fold mean is a labelled extra row
    run = json.loads((folder / "metrics.json").read_text())
    assert (folder / "refit_test_probabilities.safetensors").is_file()
    assert rows["vision"] == pytest.approx(run["refit_test_scores"]) and rows["vision (fold mean)"] == pytest.approx(
        run["test_scores"]
    )
    scored = {r["name"]: r["scored"] for r in report["table7"] if "scored" in r}
    assert scored == {
        "text": "refit",
        "text (fold mean)": "fold_mean",
        "vision": "refit",
        "vision (fold mean)": "fold_mean",
    }
    assert "each single-model row is its refit model, scored as one model" in header
    # the ensemble serves motivational_intensity from the shared model
    from hf_memotion.ensemble import MemotionEnsembleModel

    model = MemotionEnsembleModel.from_pretrained(tmp_path / "ensemble")
    memes = load_memotion(demo)["test"].select(range(3))
    base = model.base_probabilities(memes["image"], memes["text"])
    np.testing.assert_array_equal(
        base["text-motivational"]["motivational"], base["text-motivational"]["motivational_intensity"]
    )


def test_a_dev_file_names_the_dev_memes(demo, tmp_path):
    names = load_memotion(demo)["train"]["image_name"]
    listing = tmp_path / "dev.txt"
    listing.write_text("\n".join(names[:7]) + "\n")
    data = RecipeData({"path": str(demo)}, split="dev", dev_file=str(listing))()
    assert sorted(data["test"]["image_name"]) == sorted(names[:7]) and len(data["train"]) == len(names) - 7
    listing.write_text("no_such_meme.jpg\n")
    with pytest.raises(ValueError, match=r"dev\.txt: 1 image_name\(s\) are not in the training release"):
        RecipeData({"path": str(demo)}, split="dev", dev_file=str(listing))()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"family": "text", "training": {"learning_rate": [1e-5, 1e-4]}}, r"search: \{learning_rate: \[\.\.\.\]\}"),
        ({"family": "vision", "training": {"learning_rate": [0.1, 0.2]}}, "a list of learning rates is a grid"),
        ({"family": "vision", "search": {"n_trials": 3}}, "unknown key 'n_trials'; valid keys: learning_rate"),
        ({"family": "vision", "training": {"early_stopping_patience": 3}}, "set validation_fraction"),
        ({"family": "vision", "search": {"learning_rate": []}}, "needs positive values"),
        ({"family": "text", "search": {"n_trials": -1}}, r"0 \(no search\) or more"),
        ({"family": "multimodal", "search": {"n_trials": 3}}, "a joint member trains with its settings as given"),
        ({"family": "text", "architecture": "resnet50"}, "unknown key 'architecture'"),
        ({"family": "no_such_family"}, "family 'no_such_family' is not registered"),
    ],
)
def test_search_and_protocol_mistakes_are_named(model, message):
    with pytest.raises((SpecError, ValueError), match=message):
        EnsembleRunSpec.from_dict({"models": [{"name": "m", **model}]}, source="run.yaml")


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x, labels):
        return {"loss": ((self.weight * x - labels) ** 2).mean()}


def test_a_refit_on_the_folds_schedule_stops_early_at_the_folds_learning_rate(tmp_path):
    from hf_memotion.training.arguments import build_training_arguments

    rows = [{"x": torch.tensor([float(i)]), "labels": torch.tensor([0.0])} for i in range(8)]
    args = build_training_arguments(
        tmp_path,
        batch_size=2,
        num_train_epochs=4,
        learning_rate=0.1,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
    )
    trainer = MemotionTrainer(model=_Toy(), args=args, train_dataset=rows, callbacks=[StopAfterEpochs(2)])
    trainer.train()
    assert trainer.state.epoch == 2 and trainer.state.global_step == 8
    rates = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert rates[-1] == pytest.approx(0.1 * (16 - 7) / 16)  # step 8 of the 16-step decay, not of an 8-step one


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ray"])
def test_jobs_on_a_local_ray_give_the_report_of_one_process(demo, tmp_path, engine):
    models = [
        {"name": "text", "family": "text", **TINY_TEXT, "training": TEXT_TRAINING},
        {
            "name": "vision",
            "family": "vision",
            **VISION,
            "training": VISION_TRAINING,
            "search": {"learning_rate": [0.01, 0.05]},
        },
    ]
    one = run_training(_config(demo, tmp_path / "one", models))
    spread = run_training(_config(demo, tmp_path / "ray", models, jobs={"engine": engine, "cpus_per_job": 1}))
    for key in ("table7", "table8", "search", "oof_scores", "selection_scores"):
        assert spread[key] == one[key], key
    for name in ("text", "vision"):
        a = load_file(Path(tmp_path / "one" / "models" / name / "oof_probabilities.safetensors"))
        b = load_file(Path(tmp_path / "ray" / "models" / name / "oof_probabilities.safetensors"))
        # a Ray job computes with its own torch threads (cpus_per_job): float sums in another order, nothing more
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=f"{name} {k}")
    assert (tmp_path / "ray" / "answer.txt").read_text() == (tmp_path / "one" / "answer.txt").read_text()


def test_one_search_key_and_old_spellings_get_the_one_line_error():
    ensemble = EnsembleRunSpec.from_dict({"models": [{"name": "m", "search": {"n_trials": 4}}]})
    text = MemberRunSpec.from_dict({"search": {"n_trials": 4}})
    assert ensemble.models[0].search == text.search and text.search.n_trials == 4
    with pytest.raises(SpecError, match=r"run.yaml, section 'models.0.search': unknown key 'trials' \(did you mean"):
        EnsembleRunSpec.from_dict({"models": [{"name": "m", "search": {"trials": 4}}]}, source="run.yaml")
    with pytest.raises(SpecError, match=r"section 'models.0': unknown key 'modality' \(did you mean"):
        EnsembleRunSpec.from_dict({"models": [{"name": "m", "modality": "text"}]}, source="run.yaml")
    assert MemberRunSpec.from_dict({"search": {"n_trials": 0}}).search is None  # 0: no search
