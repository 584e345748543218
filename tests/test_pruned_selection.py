"""Pruned selection: successive halving of the visual grid, an Optuna pruner for the textual study, the plan."""

import json
from pathlib import Path

import optuna
import pytest

from hf_memotion.data import load_memotion, make_demo_data
from hf_memotion.families import MemberRun, ModelEntry, StudySpec, TextMemberSpec, expand_models, parse_member
from hf_memotion.families.search import run_study, study_results
from hf_memotion.recipe.planning import plan_training
from hf_memotion.recipe.selection import train_with_selection
from hf_memotion.recipe.specs import EnsembleRunSpec, JobsSpec
from hf_memotion.specs import SpecError
from hf_memotion.training import cross_validation
from hf_memotion.training.arguments import ClassifierTrainingArguments
from hf_memotion.training.pruning import PruningSpec, TrialReporter, grid_cost, halving_rungs, study_cost, survivors

VISION = {
    "name": "cnn",
    "family": "vision",
    "architecture": "test_resnet",
    "problems": ["humour"],
    "processor": {"crop_size": 32},
    "ten_crop": False,
}
VISION_TRAINING = {"optimizer": "sgd", "epochs": 4, "batch_size": 32, "lr_milestones": [3], "validation_fraction": 0.2}
RATES = [1e-5, 0.3, 0.05, 1e-3]
TEXT_SPACE = {"learning_rate": (1e-5, 3e-2), "lstm_hidden_size": [8, 16]}


class Killed(Exception):
    """A run cut off after some trainings (what a killed process leaves)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_memotion(make_demo_data(tmp_path_factory.mktemp("pruned") / "demo", n_train=160, n_test=10, seed=3))


@pytest.fixture
def fits(monkeypatch):
    """Count every training; ``fits.kill_after`` cuts the run off after that many."""
    real = cross_validation.fit_classifier

    class Recorder(list):
        kill_after = None

    seen = Recorder()

    def record(model, train_rows, stop_rows, training, output_dir, **kwargs):
        if seen.kill_after is not None and len(seen) >= seen.kill_after:
            raise Killed(output_dir)
        seen.append(str(output_dir))
        return real(model, train_rows, stop_rows, training, output_dir, **kwargs)

    monkeypatch.setattr(cross_validation, "fit_classifier", record)
    return seen


def _grid_entry(pruning=None):
    spec = parse_member({**VISION, "training": VISION_TRAINING, "search": {"learning_rate": RATES}})
    spec.pruning = pruning
    return expand_models([spec])[0]


SEARCH = MemberRun(n_splits=2, seed=0, refit=False, keep_model=False)


def test_the_rungs_and_the_survivors():
    assert halving_rungs(5, first_epochs=1, epochs=10, reduction_factor=2) == [(1, 5), (2, 2)]
    assert halving_rungs(1, first_epochs=1, epochs=10, reduction_factor=3) == []
    assert halving_rungs(9, first_epochs=10, epochs=10, reduction_factor=3) == []  # no budget below the full one
    assert survivors([0.1, 0.9, 0.5], 3) == [1] and survivors([0.5, 0.5], 2) == [0]  # ties: the grid's order


def test_the_pruned_costs_against_the_exhaustive_ones():
    spec = PruningSpec("successive_halving", min_epochs=10)
    vision = grid_cost(spec, candidates=9, n_splits=5, epochs=100)
    assert vision["pruned_fold_epochs"] == 9 * 10 + 3 * 30 + 1 * 500 and vision["exhaustive_fold_epochs"] == 4500
    text = study_cost(spec, candidates=30, n_splits=5, epochs=30)
    assert text["exhaustive_fold_epochs"] == 4500 and 150 < text["pruned_fold_epochs"] < 0.25 * 4500
    none = study_cost(None, candidates=30, n_splits=5, epochs=30)
    assert none["pruned_fold_epochs"] == none["exhaustive_fold_epochs"]


def test_pruning_mistakes_are_named():
    grid = {**VISION, "search": {"learning_rate": RATES}}
    with pytest.raises(SpecError, match=r"pruning.method 'median' is for an Optuna study"):
        EnsembleRunSpec.from_dict({"models": [{**grid, "pruning": {"method": "median"}}]})
    with pytest.raises(SpecError, match=r"pruning.method must be one of"):
        EnsembleRunSpec.from_dict({"pruning": {"method": "asha"}})
    with pytest.raises(SpecError, match=r"reduction_factor must be 2 or more"):
        EnsembleRunSpec.from_dict({"pruning": {"method": "successive_halving", "reduction_factor": 1}})
    spec = EnsembleRunSpec.from_dict(
        {"pruning": {"method": "successive_halving"}, "models": [grid, {**grid, "name": "own", "pruning": {}}, VISION]}
    )
    # the run's, or its own; a member without a search has nothing to prune
    assert [m.pruning and m.pruning.method for m in spec.models] == ["successive_halving", "none", None]


ROOT = Path(__file__).resolve().parents[1]


def test_the_default_first_rung_is_the_one_the_benchmark_validated():
    """One setting: the benchmark's committed figures ran the library's default pruning and kept the exhaustive
    choice within 0.01 on every problem of the demo (``--plan`` prices the same default: the test below)."""
    import yaml

    figures = json.loads((ROOT / "benchmarks" / "results" / "selection.json").read_text())
    default = PruningSpec(method="successive_halving")
    settings = figures["settings"]
    halving = {"method": "successive_halving", "reduction_factor": default.reduction_factor}
    assert settings["pruning"] == {"vision": halving, "text": halving}  # no min_epochs: the default first rung
    demo = {m["name"]: m for m in yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["models"]}
    for name, rung in settings["first_rung"].items():
        assert rung == default.first_rung(demo[name]["training"]["epochs"]), f"{name}: rerun bench_selection.py"
    for name in ("text", "vision"):
        assert figures["summary"][name]["largest_problem_gap"] <= 0.01, name


@pytest.mark.slow
def test_the_paper_config_pruned_plans_the_validated_default():
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    plan = plan_training({**config, "pruning": {"method": "successive_halving"}})
    default = PruningSpec(method="successive_halving")  # the first rung the benchmark validated (test above)
    visual = next(m for m in plan.models if m.family == "vision")
    priced = grid_cost(default, candidates=visual.candidates, n_splits=plan.n_splits, epochs=100)
    assert visual.pruning == "successive_halving" and visual.fold_epochs == priced["pruned_fold_epochs"]
    textual = next(m for m in plan.models if m.family == "text")
    priced = study_cost(default, candidates=textual.candidates, n_splits=plan.n_splits, epochs=30)
    assert textual.fold_epochs == pytest.approx(priced["pruned_fold_epochs"], abs=1)
    assert plan.gpu_hours < plan.exhaustive_gpu_hours
    text = plan.format()
    assert "| exhaustive (the paper's) |" in text and "| pruned (successive_halving) |" in text
    small = {
        "n_splits": 2,
        "plan": {"n_train": 40, "n_test": 10},
        "models": [{**VISION, "training": VISION_TRAINING, "search": {"learning_rate": RATES}}],
    }
    exhaustive = plan_training(small)
    assert "pruning.method=successive_halving plans a pruned one beside" in exhaustive.format()
    pruned = plan_training({**small, "pruning": {"method": "successive_halving", "min_epochs": 1}})
    assert pruned.exhaustive_gpu_hours == pytest.approx(exhaustive.gpu_hours)
    assert pruned.gpu_hours < exhaustive.gpu_hours
    # one rung (4 rates for 1 epoch), the survivor's 2 folds, the refit; against 4 rates x 2 folds and the refit
    assert (pruned.trainings, exhaustive.trainings) == (4 + 2 + 1, 4 * 2 + 1)


@pytest.mark.slow
def test_a_pruned_grid_halves_on_the_first_fold_and_resumes_to_the_same_choice(data, tmp_path, fits):
    pruning = PruningSpec("successive_halving", min_epochs=1, reduction_factor=2)
    entry = _grid_entry(pruning)
    common = MemberRun(n_splits=2, seed=0)
    _, selections = train_with_selection([entry], tmp_path / "a", lambda: data, common, data=data)
    # rung 1 epoch: 4 rates; rung 2 epochs: 2 rates; the survivor's 2 folds; the refit
    assert len(fits) == 4 + 2 + 2 + 1
    choice = selections["cnn"]
    states = [c["state"] for c in choice["candidates"]]
    assert states.count("pruned") == 3 and choice["pruned"] == 3
    assert [len(c["rungs"]) for c in choice["candidates"]].count(2) == 2
    assert choice["train_steps"] == sum(c["train_steps"] for c in choice["candidates"]) > 0
    assert "pruned by successive_halving" in choice["method"]
    winner = next(c for c in choice["candidates"] if c["state"] == "complete")
    assert choice["chosen"] == winner["values"] and choice["score"] == winner["score"]
    for pruned in (c for c in choice["candidates"] if c["state"] == "pruned"):
        assert pruned["score"] is None and pruned["pruned_at"] == pruned["rungs"][-1]
    rung = tmp_path / "a" / "cnn" / "search" / "rung_1" / f"lr_{RATES[0]:g}"
    settings = json.loads((rung / "metrics.json").read_text())
    assert settings["budget"] == {"folds": 1} and settings["training"]["epochs"] == 1
    assert settings["training"]["lr_milestones"] == [0.75]  # 3 of 4 epochs, compressed to 1

    fits.clear()
    fits.kill_after = 5  # killed in rung 2's second training
    with pytest.raises(Killed):
        train_with_selection([entry], tmp_path / "b", lambda: data, common, data=data)
    fits.kill_after = None
    _, resumed = train_with_selection([entry], tmp_path / "b", lambda: data, common, data=data)
    assert len(fits) == 9  # nothing finished trained twice
    assert resumed["cnn"]["chosen"] == choice["chosen"] and resumed["cnn"]["candidates"] == choice["candidates"]


@pytest.mark.slow
def test_an_exhaustive_grid_is_one_round_and_counts_its_steps(data, tmp_path, fits):
    entry = _grid_entry()
    pending, records = entry.spec.search.progress(entry, tmp_path, SEARCH)
    assert len(pending) == 4 and all(r["score"] is None for r in records)
    train_with_selection([entry], tmp_path, lambda: data, MemberRun(n_splits=2, seed=0), data=data, jobs=JobsSpec())
    assert len(fits) == 4 * 2 + 1
    choice = entry.spec.search.select(entry, tmp_path, SEARCH)
    assert choice["pruned"] == 0 and all(c["state"] == "complete" for c in choice["candidates"])
    assert choice["score"] == max(c["score"] for c in choice["candidates"])


def _study(data, folder, pruning, n_trials=6):
    spec = TextMemberSpec(
        problems=["humour"],
        training=ClassifierTrainingArguments(optimizer="adam", epochs=3, batch_size=16, early_stopping_patience=0),
        model={"attention_size": 8, "ffn_size": 8, "max_length": 16},
        tiny={"hidden_size": 16, "num_layers": 1},
        search=StudySpec(n_trials=n_trials, space=TEXT_SPACE),
        pruning=pruning,
    )
    return run_study(data["train"], folder, ModelEntry.of(spec), SEARCH)


def _trials(study):
    return [(t.number, t.state, t.params, t.value, t.intermediate_values) for t in study.trials]


@pytest.mark.slow
def test_a_pruned_study_stops_hopeless_trials_and_resumes_to_the_same_trials(data, tmp_path, fits):
    pruning = PruningSpec("successive_halving", min_epochs=1, reduction_factor=2)
    study = _study(data, tmp_path / "a", pruning)
    states = [t.state for t in study.trials]
    assert len(states) == 6 and optuna.trial.TrialState.PRUNED in states
    assert states[0] == optuna.trial.TrialState.COMPLETE  # the first trial always runs to the end
    assert len(fits) < 6 * 2
    for trial in study.trials:  # steps: each fold's 3 epochs and its end (fold 1's first epoch is step 5)
        assert set(trial.intermediate_values) <= set(range(1, 9))
        assert trial.state == optuna.trial.TrialState.PRUNED or set(trial.intermediate_values) == set(range(1, 9))
    _, values, score, records = study_results(tmp_path / "a", TEXT_SPACE)
    assert score == study.best_value and values == study.best_params
    pruned = [r for r in records if r["state"] == "pruned"]
    assert pruned and all(r["score"] is None and r["pruned_at"]["step"] >= 1 for r in pruned)
    assert all(r["train_steps"] > 0 for r in records)

    fits.clear()
    fits.kill_after = 3  # cut off inside a trial
    with pytest.raises(Killed):
        _study(data, tmp_path / "b", pruning)
    fits.kill_after = None
    resumed = _study(data, tmp_path / "b", pruning)
    assert _trials(resumed) == _trials(study)  # the same trials, values, decisions and scores


def test_a_reporter_replays_a_reused_fold_and_skips_what_the_study_holds():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    first = TrialReporter(trial, epochs=2)
    first.fold_finished(0, {"epoch_scores": [[1.0, 0.2], [2.0, 0.6]], "f1_humour": 0.5, "train_steps": 8})
    again = TrialReporter(trial, epochs=2, reported=[1, 2, 3])  # a resumed run: fold 0's steps are in the study
    again.fold_finished(0, {"epoch_scores": [[1.0, 0.9], [2.0, 0.9]], "f1_humour": 0.4, "train_steps": 8})
    again.epoch_done(1, 1.0, 0.7)  # from the second fold on: the finished folds' held-out macro-F1
    assert study.trials[0].intermediate_values == {1: 0.2, 2: 0.6, 3: 0.5, 4: 0.4}
    assert (again.train_steps, again.trainings) == (8, 1)


def test_a_fold_stopped_early_reports_its_best_for_the_epochs_it_skipped():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    reporter = TrialReporter(study.ask(), epochs=4)
    reporter.fold_finished(0, {"epoch_scores": [[1.0, 0.3], [2.0, 0.5]], "f1_humour": 0.45})
    assert study.trials[0].intermediate_values == {1: 0.3, 2: 0.5, 3: 0.5, 4: 0.5, 5: 0.45}


@pytest.mark.slow
def test_the_recipe_reports_what_a_pruned_selection_chose_and_stopped(tmp_path, fits):
    from hf_memotion.recipe.ensemble_recipe import run_training

    demo = make_demo_data(tmp_path / "demo", n_train=120, n_test=30, image_size=64, seed=4)
    text = {
        "name": "tuned",
        "family": "text",
        "tiny": {"hidden_size": 16, "num_layers": 1},
        "model": {"lstm_hidden_size": 8, "attention_size": 8, "ffn_size": 8, "max_length": 16},
        "training": {"optimizer": "adam", "epochs": 3, "batch_size": 16, "early_stopping_patience": 0},
        "search": {"n_trials": 4, "space": {"learning_rate": [1e-5, 3e-2]}},
    }
    vision = {**VISION, "problems": None, "training": VISION_TRAINING, "search": {"learning_rate": RATES}}  # all nine
    config = {
        "data": {"path": str(demo)},
        "output_dir": str(tmp_path / "run"),
        "n_splits": 2,
        "models": [text, vision],
        "stacking": {"methods": ["average"]},
        "bf16_check": False,
        "pruning": {"method": "successive_halving", "min_epochs": 1, "reduction_factor": 2},
    }
    report = run_training(config)
    grid = report["search"]["cnn"]
    assert grid["pruned"] == 3 and "pruned by successive_halving" in grid["method"]
    assert grid["trainings"] == 4 + 2 + 2  # two rungs, then the survivor's folds
    assert report["protocol"]["trainings"] == len(fits)  # pruned trials' cut-off folds and the refits included
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "Pruned candidates" in markdown and "rung of 1 epochs (fold 1)" in markdown
    card = (tmp_path / "run" / "models" / "cnn" / "model" / "README.md").read_text()
    assert "3 of the 4 candidates were pruned before their last fold" in card
