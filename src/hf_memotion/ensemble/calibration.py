"""Calibrated scores: a meta-estimator's probabilities mapped so that a 0.8 is right about 80% of the time.

The stacked meta-estimators are chosen for macro-F1; their outputs (a decision tree's leaf shares, a hard vote's
counts, an average of log-probabilities) are not probabilities in that sense. Each problem's stacker therefore
fits one calibration map on its *out-of-fold* meta-probabilities (each row predicted by a meta-estimator that did
not see it, so the map never learns from rows it was fitted on, and the held-out split is never used):

- ``temperature``: ``softmax(log p / T)``, one ``T`` per problem (the answer never changes);
- ``sigmoid``: Platt scaling per class, one-vs-rest, on the log-odds of that class, renormalised;
- ``isotonic``: a monotone map per class, one-vs-rest, renormalised;
- ``none``: the probabilities as they are (the paper's);
- ``auto``: of the maps that keep every answer (``none``, ``temperature``), the one with the lower out-of-fold
  log-loss, by a second cross-validation on the same out-of-fold meta-probabilities. ``sigmoid`` and
  ``isotonic`` move each class's threshold, so they change answers (on the demo, letting ``auto`` choose among all
  four lowered subtask B's macro-F1 from 0.713 to 0.619): they are used only when named. Their out-of-fold
  log-loss is reported beside.

The fitted map is a handful of numbers kept in the ensemble's ``config.json`` (no file to unpickle). Fitting uses
scikit-learn's ``LogisticRegression`` and ``IsotonicRegression``; the temperature is one bounded scalar fit by
scipy (scikit-learn's own temperature scaling wraps an estimator, and a stacker's rules are not estimators).
:mod:`hf_memotion.metrics.calibration` measures the result (expected calibration error, reliability curves).

Examples:
    >>> import numpy as np
    >>> from hf_memotion.metrics.calibration import expected_calibration_error
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 400)
    >>> overconfident = np.where(rng.random(400) < 0.7, labels, 1 - labels)  # right 70% of the time, sure of it
    >>> probabilities = np.eye(2)[overconfident] * 0.98 + 0.01
    >>> calibration = ProblemCalibration("temperature").fit(probabilities, labels)
    >>> round(expected_calibration_error(probabilities, labels), 2), round(
    ...     expected_calibration_error(calibration.apply(probabilities), labels), 2)
    (0.3, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hf_memotion.metrics.calibration import log_loss

__all__ = ["ANSWER_KEEPING", "CALIBRATION_METHODS", "ProblemCalibration", "choose_calibration"]

#: The calibration maps.
CALIBRATION_METHODS = ("none", "temperature", "sigmoid", "isotonic")
#: The maps ``auto`` chooses from: those that never change an answer (the meta-estimator's argmax).
ANSWER_KEEPING = ("none", "temperature")
_EPS = 1e-12  # the floor of a probability whose log is taken
_TEMPERATURE_RANGE = (0.05, 20.0)
#: Most points of one class's isotonic map read from a config (a fit keeps one per distinct step of its out-of-fold
#: rows: a few hundred for Memotion's 7,000).
MAX_MAP_POINTS = 10_000
#: Largest slope or intercept of a sigmoid map read from a config (a fit's are of order 1 to 100).
MAX_SIGMOID_COEFFICIENT = 1e6


def _normalise(values: np.ndarray) -> np.ndarray:
    totals = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(totals > _EPS, values / np.maximum(totals, _EPS), uniform)


def _log_odds(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, 1e-6, 1 - 1e-6)
    return np.log(clipped) - np.log1p(-clipped)


def _softmax_tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probabilities, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


@dataclass
class ProblemCalibration:
    """The calibration map of one problem's meta-probabilities.

    Attributes:
        method: One of :data:`CALIBRATION_METHODS`.
        parameters: What the map learned: ``temperature``; ``slopes`` and ``intercepts`` per class (sigmoid);
            ``thresholds`` and ``values`` per class (isotonic). JSON numbers only.
        scores: Out-of-fold log-loss of every method compared (``auto``).

    Examples:
        >>> calibration = ProblemCalibration("temperature", {"temperature": 2.0})
        >>> calibration.apply(np.array([[0.9, 0.1]])).round(3)
        array([[0.75, 0.25]])
        >>> ProblemCalibration.from_dict(calibration.to_dict()) == calibration
        True
    """

    method: str = "none"
    parameters: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {[*CALIBRATION_METHODS, 'auto']}, got {self.method!r}")

    def fit(self, probabilities: np.ndarray, labels: np.ndarray) -> ProblemCalibration:
        """Fit the map on out-of-fold probabilities ``(n, classes)`` and gold class ids ``(n,)``."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        classes = probabilities.shape[1]
        columns = range(1, 2) if classes == 2 else range(classes)  # binary: the positive class alone
        if self.method == "temperature":
            from scipy.optimize import minimize_scalar

            low, high = (math.log(v) for v in _TEMPERATURE_RANGE)
            best = minimize_scalar(
                lambda log_t: log_loss(_softmax_tempered(probabilities, math.exp(log_t)), labels),
                bounds=(low, high),
                method="bounded",
            )
            self.parameters = {"temperature": float(math.exp(best.x))}
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            slopes, intercepts = [], []
            for k in columns:
                target = (labels == k).astype(int)
                if target.min() == target.max():  # a class never (or always) seen: leave it as it is
                    slopes.append(1.0)
                    intercepts.append(0.0)
                    continue
                model = LogisticRegression(C=1e4, max_iter=1000).fit(_log_odds(probabilities[:, k])[:, None], target)
                slopes.append(float(model.coef_[0, 0]))
                intercepts.append(float(model.intercept_[0]))
            self.parameters = {"slopes": slopes, "intercepts": intercepts}
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            thresholds, values = [], []
            for k in columns:
                model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                model.fit(probabilities[:, k], (labels == k).astype(float))
                thresholds.append([float(v) for v in model.X_thresholds_])
                values.append([float(v) for v in model.y_thresholds_])
            self.parameters = {"thresholds": thresholds, "values": values}
        else:
            self.parameters = {}
        return self

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """The calibrated probabilities of ``(n, classes)`` meta-probabilities (rows sum to 1)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.method == "none" or len(probabilities) == 0:
            return probabilities
        if self.method == "temperature":
            return _softmax_tempered(probabilities, float(self.parameters["temperature"]))
        classes = probabilities.shape[1]
        columns = [1] if classes == 2 else list(range(classes))
        mapped = np.empty((len(probabilities), len(columns)))
        for j, k in enumerate(columns):
            if self.method == "sigmoid":
                slope, intercept = self.parameters["slopes"][j], self.parameters["intercepts"][j]
                mapped[:, j] = 1.0 / (1.0 + np.exp(-(slope * _log_odds(probabilities[:, k]) + intercept)))
            else:
                mapped[:, j] = np.interp(
                    probabilities[:, k], self.parameters["thresholds"][j], self.parameters["values"][j]
                )
        if classes == 2:
            return np.column_stack([1.0 - mapped[:, 0], mapped[:, 0]])
        return _normalise(mapped)

    def check_classes(self, num_classes: int, where: str = "calibration") -> None:
        """Refuse a map whose per-class lists do not fit a problem of ``num_classes`` classes."""
        wanted = 1 if num_classes == 2 else num_classes
        for name in ("slopes", "intercepts", "thresholds", "values"):
            if name in self.parameters and len(self.parameters[name]) != wanted:
                raise ValueError(
                    f"{where}: {name} has {len(self.parameters[name])} entries, a {num_classes}-class problem needs "
                    f"{wanted}"
                )
        pairs = zip(self.parameters.get("thresholds", []), self.parameters.get("values", []), strict=True)
        for thresholds, values in pairs:
            if len(thresholds) != len(values) or not thresholds:
                raise ValueError(f"{where}: every isotonic map needs as many values as thresholds (at least one)")

    def to_dict(self) -> dict[str, Any]:
        """The map as JSON-ready values (what the ensemble's ``config.json`` keeps)."""
        return {"method": self.method, "parameters": self.parameters, "scores": self.scores}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, where: str = "calibration") -> ProblemCalibration:
        """Read a map back; a map that is not one this module writes is one clear error naming ``where``."""
        values = dict(values or {"method": "none"})
        method = values.get("method")
        parameters = values.get("parameters") or {}
        if method not in CALIBRATION_METHODS or not isinstance(parameters, dict):
            raise ValueError(f"{where}: method must be one of {list(CALIBRATION_METHODS)} with a parameters mapping")
        expected = {
            "none": set(),
            "temperature": {"temperature"},
            "sigmoid": {"slopes", "intercepts"},
            "isotonic": {"thresholds", "values"},
        }[method]
        if set(parameters) != expected or not all(_finite_numbers(v) for v in parameters.values()):
            raise ValueError(f"{where}: a {method} map needs {sorted(expected)} as finite numbers, got {parameters!r}")
        _check_ranges(method, parameters, where)
        return cls(method, dict(parameters), {k: float(v) for k, v in (values.get("scores") or {}).items()})


def _check_ranges(method: str, parameters: Mapping[str, Any], where: str) -> None:
    """Refuse a map whose numbers a fit cannot give: it would serve values that are not probabilities."""
    if method == "temperature":
        low, high = _TEMPERATURE_RANGE
        if not low <= parameters["temperature"] <= high:
            raise ValueError(
                f"{where}: the temperature must be between {low} and {high} (the range a fit searches), got "
                f"{parameters['temperature']!r}"
            )
    elif method == "sigmoid":
        for name in ("slopes", "intercepts"):
            values = parameters[name]
            if not isinstance(values, list) or not all(
                isinstance(v, int | float) and abs(v) <= MAX_SIGMOID_COEFFICIENT for v in values
            ):
                raise ValueError(
                    f"{where}: sigmoid {name} must be a list of numbers within +-{MAX_SIGMOID_COEFFICIENT:g}"
                )
    elif method == "isotonic":
        for name in ("thresholds", "values"):
            for k, points in enumerate(parameters[name]):
                if not isinstance(points, list) or len(points) > MAX_MAP_POINTS:
                    raise ValueError(
                        f"{where}: isotonic {name}[{k}] must be a list of at most {MAX_MAP_POINTS} numbers"
                    )
                array = np.asarray(points, dtype=np.float64)
                if array.size and (array.min() < 0.0 or array.max() > 1.0 or np.any(np.diff(array) < 0)):
                    raise ValueError(
                        f"{where}: isotonic {name}[{k}] must rise from 0 to 1 (a fitted map's points are sorted "
                        "probabilities); this one is not a fitted map"
                    )


def _finite_numbers(value: Any) -> bool:
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def choose_calibration(
    probabilities: np.ndarray,
    labels: np.ndarray,
    method: str = "auto",
    *,
    cv: int = 5,
    seed: int = 0,
) -> ProblemCalibration:
    """Fit ``method``'s map, or for ``"auto"`` the answer-keeping one with the lower out-of-fold log-loss.

    ``"auto"`` scores every method of :data:`CALIBRATION_METHODS` by a stratified ``cv``-fold cross-validation on
    ``probabilities`` (each fold's map fitted on the other folds: ``scores``), chooses among
    :data:`ANSWER_KEEPING`, and fits the winner on all rows. With fewer than two rows of a class per fold,
    ``auto`` keeps the probabilities as they are.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> labels = rng.integers(0, 3, 300)
        >>> probabilities = np.eye(3)[np.where(rng.random(300) < 0.6, labels, (labels + 1) % 3)] * 0.97 + 0.01
        >>> chosen = choose_calibration(probabilities, labels)
        >>> chosen.method, chosen.scores["temperature"] < chosen.scores["none"]
        ('temperature', True)
    """
    from sklearn.model_selection import StratifiedKFold

    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if method != "auto":
        return ProblemCalibration(method).fit(probabilities, labels)
    n_folds = min(int(cv), int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0)
    if n_folds < 2:
        return ProblemCalibration("none")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = {}
    for candidate in CALIBRATION_METHODS:
        calibrated = np.empty_like(probabilities)
        for fit_idx, val_idx in splitter.split(probabilities, labels):
            calibrated[val_idx] = (
                ProblemCalibration(candidate).fit(probabilities[fit_idx], labels[fit_idx]).apply(probabilities[val_idx])
            )
        scores[candidate] = log_loss(calibrated, labels)
    best = min(ANSWER_KEEPING, key=lambda m: (scores[m], ANSWER_KEEPING.index(m)))  # ties: the simpler
    chosen = ProblemCalibration(best).fit(probabilities, labels)
    chosen.scores = scores
    return chosen
