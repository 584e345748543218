"""Calibrated scores: the maps, their choice on out-of-fold rows only, the stacker, the saved ensemble, the report."""

import json

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from conftest import build_tiny_ensemble
from hf_memotion.ensemble import MemotionEnsembleModel, ProblemStacker
from hf_memotion.ensemble.calibration import (
    ANSWER_KEEPING,
    CALIBRATION_METHODS,
    ProblemCalibration,
    choose_calibration,
)
from hf_memotion.ensemble.configuration_memotion_ensemble import MemotionEnsembleConfig
from hf_memotion.metrics.calibration import compare_calibration, expected_calibration_error, log_loss
from hf_memotion.reporting.ensemble_report import plot_reliability, render_report


def _overconfident(classes: int, n: int = 600, right: float = 0.65, seed: int = 0):
    """Answers right ``right`` of the time, each scored as if almost sure."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    answers = np.where(rng.random(n) < right, labels, (labels + rng.integers(1, classes, n)) % classes)
    return np.eye(classes)[answers] * 0.9 + 0.1 / classes, labels


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("method", ["temperature", "sigmoid", "isotonic"])
def test_every_map_makes_overconfident_scores_honest(method, classes):
    probabilities, labels = _overconfident(classes)
    held_p, held_y = _overconfident(classes, seed=1)
    calibration = ProblemCalibration(method).fit(probabilities, labels)
    after = calibration.apply(held_p)
    assert np.allclose(after.sum(axis=1), 1.0) and (after >= 0).all()
    assert expected_calibration_error(after, held_y) < 0.5 * expected_calibration_error(held_p, held_y)
    assert log_loss(after, held_y) < log_loss(held_p, held_y)
    if method == "temperature":  # one temperature never changes an answer
        assert (after.argmax(1) == held_p.argmax(1)).all()


def test_auto_chooses_the_lowest_out_of_fold_log_loss_and_none_when_too_few_rows():
    probabilities, labels = _overconfident(3)
    chosen = choose_calibration(probabilities, labels, "auto", cv=5, seed=0)
    assert set(chosen.scores) == set(CALIBRATION_METHODS)  # every map scored, the answer-keeping ones compared
    assert chosen.method == min(ANSWER_KEEPING, key=chosen.scores.get) == "temperature"
    assert choose_calibration(probabilities[:3], labels[:3], "auto").method == "none"
    rng = np.random.default_rng(2)
    binary = rng.integers(0, 2, 2000)
    answers = np.where(rng.random(2000) < 0.75, binary, 1 - binary)
    well = np.eye(2)[answers] * 0.5 + 0.25  # scored 0.75 and right 75% of the time: left nearly as it is
    assert choose_calibration(well, binary, "temperature").parameters["temperature"] == pytest.approx(1, abs=0.15)


def test_the_stacker_calibrates_on_its_own_out_of_fold_output_only():
    probabilities, labels = _overconfident(2, n=300)
    noisy = np.random.default_rng(5).dirichlet([1, 1], 300)
    own = {"a": probabilities, "b": noisy}
    stacker = ProblemStacker(["soft_vote"], cv=4, seed=3, calibration_method="temperature").fit(own, labels)
    # the map equals one fitted on the soft vote's output for the same rows (a rule: no parameters, so its
    # out-of-fold output is its output); it never saw anything else
    expected = ProblemCalibration("temperature").fit((probabilities + noisy) / 2, labels)
    assert stacker.calibration.parameters["temperature"] == pytest.approx(expected.parameters["temperature"])
    raw = stacker.predict_proba(own, calibrated=False)
    assert np.allclose(raw, (probabilities + noisy) / 2)
    assert np.allclose(stacker.predict_proba(own), stacker.calibration.apply(raw))
    tree = ProblemStacker(["decision_tree"], cv=4, seed=3, calibration_method="isotonic").fit(own, labels)
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=3)
    matrix = np.concatenate([probabilities, noisy], axis=1)
    out_of_fold = tree._out_of_fold("decision_tree", splitter, matrix, [probabilities, noisy], labels)
    refit = ProblemCalibration("isotonic").fit(out_of_fold, labels)
    assert tree.calibration.parameters == refit.parameters
    assert not np.allclose(out_of_fold, tree.predict_proba(own, calibrated=False))  # not the refit tree's own rows
    assert ProblemStacker(["average"]).fit(own, labels).calibration.method == "none"  # the paper's: none


def test_a_saved_ensemble_keeps_its_maps_and_refuses_a_broken_one(synthetic, tmp_path):
    ensemble = build_tiny_ensemble(synthetic)
    for stacker in ensemble.stackers.values():
        stacker.calibration = ProblemCalibration("temperature", {"temperature": 1.7})
    ensemble.stackers["humour"].calibration = ProblemCalibration(
        "isotonic", {"thresholds": [[0.1, 0.9]], "values": [[0.3, 0.6]]}
    )
    ensemble.save_pretrained(tmp_path / "ensemble")
    loaded = MemotionEnsembleModel.from_pretrained(tmp_path / "ensemble")
    assert loaded.stackers["humour"].calibration == ensemble.stackers["humour"].calibration
    assert loaded.stackers["sentiment"].calibration.parameters == {"temperature": 1.7}
    config = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    for broken, message in [
        ({"method": "temperature", "parameters": {"temperature": -1.0}}, "must be between 0.05 and 20"),
        ({"method": "temperature", "parameters": {"temperature": float("nan")}}, "finite numbers"),
        ({"method": "platt", "parameters": {}}, "method must be one of"),
        ({"method": "sigmoid", "parameters": {"slopes": [1.0, 1.0], "intercepts": [0.0, 0.0]}}, "needs 1"),
    ]:
        config["meta"]["humour"]["calibration"] = broken
        with pytest.raises(ValueError, match=message):
            MemotionEnsembleConfig.from_dict(json.loads(json.dumps(config)))


def test_the_report_gives_ece_before_and_after_and_the_reliability_diagram(tmp_path):
    before, after, labels = {}, {}, {}
    for seed, problem in enumerate(["sentiment", "humour", "humour_intensity"]):
        classes = {"sentiment": 3, "humour": 2, "humour_intensity": 4}[problem]
        before[problem], labels[problem] = _overconfident(classes, seed=seed)
        after[problem] = ProblemCalibration("temperature").fit(before[problem], labels[problem]).apply(before[problem])
    found = compare_calibration(before, after, labels, {p: "temperature" for p in before})
    assert set(found["subtasks"]) == {"A", "B", "C"}
    assert all(v["ece_after"] < v["ece_before"] for v in found["subtasks"].values())
    assert found["problems"]["humour"]["log_loss_after"] < found["problems"]["humour"]["log_loss_before"]
    assert plot_reliability(tmp_path, before, after, labels) == ["reliability.png"]
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    text = render_report(
        {"table7": [], "table8": {}, "n_train": 9, "n_test": 3, "calibration": found}, ["reliability.png"]
    )
    assert "## Calibration" in text and "| B |" in text and "| humour | temperature |" in text
