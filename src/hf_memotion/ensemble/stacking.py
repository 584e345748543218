"""Stacked generalisation over base models' out-of-fold probabilities (Section 4.4 of the Memotion paper).

For each problem a meta-estimator maps the base models' class probabilities to the final class.
Candidates (the paper's, Table 8): ``logistic_regression``, ``decision_tree``, ``random_forest``
(scikit-learn estimators, saved as skops files), and the rules ``hard_vote`` (majority of the base
models' predicted classes, ties to the highest summed probability), ``soft_vote`` (arithmetic mean
of the base probabilities) and ``average`` (the naive average of the paper, taken here as the mean
of log-probabilities, like ten-crop). Rules have no parameters and need no file.

The meta-estimator is chosen per problem by stratified k-fold macro-F1 *on the out-of-fold
features*, so it never sees a base model's prediction on that model's own training rows. Its
features are that problem's probabilities from every base model (``features="own"``) or every
problem's (``"all"``). With ``calibration`` (:mod:`~hf_memotion.ensemble.calibration`), the chosen
meta-estimator's out-of-fold probabilities from that same cross-validation fit a calibration map, which
:meth:`ProblemStacker.predict_proba` applies: the scores become calibrated probabilities, never fitted on a row
they are then scored on.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> good = np.eye(2)[y] * 0.6 + 0.2
    >>> stack = ProblemStacker(["soft_vote", "logistic_regression"]).fit({"a": good, "b": rng.random((200, 2))}, y)
    >>> stack.method in ("soft_vote", "logistic_regression"), stack.predict_proba({"a": good, "b": good}).shape
    (True, (200, 2))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

from hf_memotion.ensemble.calibration import ProblemCalibration, choose_calibration

__all__ = [
    "ESTIMATORS",
    "META_METHODS",
    "RULES",
    "TRUSTED_TYPES",
    "ProblemStacker",
    "dump_estimator",
    "fit_stackers",
    "load_estimator",
]

#: scikit-learn meta-estimators, as the paper tried them (settings chosen to stay small and regularised).
ESTIMATORS = {
    "logistic_regression": LogisticRegression(max_iter=2000, C=1.0),
    "decision_tree": DecisionTreeClassifier(max_depth=6, min_samples_leaf=5, random_state=0),
    "random_forest": RandomForestClassifier(n_estimators=200, min_samples_leaf=3, random_state=0, n_jobs=1),
}
#: Parameter-free combination rules.
RULES = ("hard_vote", "soft_vote", "average")
#: Every method, in the order ties are broken (simpler first).
META_METHODS = ("average", "soft_vote", "hard_vote", "logistic_regression", "decision_tree", "random_forest")
#: The estimators a meta-estimator file may hold (its root object): those :data:`ESTIMATORS` writes.
ROOT_TYPES = (
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
)
#: Every type a meta-estimator file may hold: exactly the reviewed types of the files hf-memotion writes (what
#: skops records for the three estimators and their fitted state). Anything else, even a type skops trusts by
#: default, is refused. ``tests/test_ensemble.py`` checks that fitted estimators use no other type.
TRUSTED_TYPES = (
    *ROOT_TYPES,
    "sklearn.tree._tree.Tree",
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.tuple",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.NoneType",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.int64",
    "numpy.int32",
    "numpy.float64",
    "numpy.float32",
    "numpy.bool_",
)


def dump_estimator(estimator) -> bytes:
    """Serialise a scikit-learn meta-estimator with skops (never pickle)."""
    import skops.io as sio

    return sio.dumps(estimator)


def estimator_file_types(data: bytes, source: str = "<bytes>") -> tuple[str, list[str]]:
    """The root type and every type recorded in a skops file's schema (read without loading anything).

    Raises:
        ValueError: When ``data`` is not a skops file.
    """
    import io
    import json
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{source} is not a skops estimator file ({type(err).__name__}: {err})") from None
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    root = f"{schema.get('__module__')}.{schema.get('__class__')}" if isinstance(schema, dict) else "<none>"
    return root, sorted(found)


def load_estimator(data: bytes, source: str = "<bytes>"):
    """Load a skops meta-estimator holding only :data:`TRUSTED_TYPES`, rooted in one of :data:`ROOT_TYPES`.

    Raises:
        ValueError: Naming the file and the refused types; nothing in it is executed.
    """
    import skops.io as sio

    root, types = estimator_file_types(data, source)
    refused = [t for t in types if t not in TRUSTED_TYPES]
    if refused or root not in ROOT_TYPES:
        raise ValueError(
            f"{source} holds types outside hf-memotion's reviewed list: {refused or [root]}; refusing to load it "
            "(only scikit-learn logistic regression, decision tree and random forest files written by "
            "hf-memotion are accepted)"
        )
    untrusted = sio.get_untrusted_types(data=data)
    return sio.loads(data, trusted=[t for t in untrusted if t in TRUSTED_TYPES])


def _stack(features: Mapping[str, np.ndarray], order: Sequence[str]) -> np.ndarray:
    return np.hstack([np.asarray(features[name], dtype=np.float64) for name in order])


def _rule_proba(method: str, blocks: list[np.ndarray]) -> np.ndarray:
    probs = np.stack(blocks)  # (models, rows, classes)
    if method == "soft_vote":
        out = probs.mean(axis=0)
    elif method == "average":
        logs = np.log(np.clip(probs, 1e-12, 1.0)).mean(axis=0)
        out = np.exp(logs - logs.max(axis=1, keepdims=True))
    elif method == "hard_vote":
        votes = np.zeros(probs.shape[1:])
        rows = np.arange(probs.shape[1])
        for block in probs:
            votes[rows, block.argmax(axis=1)] += 1.0
        out = votes + 1e-3 * probs.sum(axis=0)  # ties go to the class with more summed probability
    else:
        raise ValueError(f"unknown rule {method!r}")
    return out / out.sum(axis=1, keepdims=True)


@dataclass
class ProblemStacker:
    """The meta-estimator of one problem.

    Attributes:
        candidates: Methods to choose from (default: all of :data:`META_METHODS`); one entry fixes it.
        cv: Folds of the selection cross-validation.
        seed: Seed of the selection folds.
        method: The chosen method (after :meth:`fit`).
        scores: Cross-validated macro-F1 of every candidate (after :meth:`fit`).
        estimator: The fitted scikit-learn estimator (``None`` for rules).
        model_order: Base models whose probabilities are the rule's inputs, in order.
        feature_order: Feature blocks the estimator reads, in order.
        num_classes: Classes of the problem.
        calibration_method: What to calibrate with: ``"none"`` (the paper's), ``"temperature"``, ``"sigmoid"``,
            ``"isotonic"``, or ``"auto"`` (of the maps that keep every answer, the lower out-of-fold log-loss).
        calibration: The fitted calibration map (after :meth:`fit`).
        background: Feature block -> its mean over the training rows (after :meth:`fit`): what a base model
            answers on average, which stands in for a model left out when its contribution is measured
            (:mod:`hf_memotion.explaining.shapley`).

    Examples:
        >>> ProblemStacker(["decision_tree"]).candidates
        ['decision_tree']
    """

    candidates: Sequence[str] = META_METHODS
    cv: int = 5
    seed: int = 0
    method: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    estimator: object | None = None
    model_order: list[str] = field(default_factory=list)
    feature_order: list[str] = field(default_factory=list)
    num_classes: int = 0
    calibration_method: str = "none"
    calibration: ProblemCalibration = field(default_factory=ProblemCalibration)
    background: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.candidates = list(self.candidates)
        unknown = [c for c in self.candidates if c not in META_METHODS]
        if unknown or not self.candidates:
            raise ValueError(f"unknown meta-estimator(s) {unknown}; choose from {list(META_METHODS)}")

    def _predict_with(self, method, estimator, rule_blocks, matrix) -> np.ndarray:
        if method in RULES:
            return _rule_proba(method, rule_blocks)
        proba = np.zeros((matrix.shape[0], self.num_classes))
        proba[:, estimator.classes_] = estimator.predict_proba(matrix)
        return proba

    def fit(
        self,
        own: Mapping[str, np.ndarray],
        labels: np.ndarray,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> ProblemStacker:
        """Choose and fit the meta-estimator.

        Args:
            own: Base model name -> that model's out-of-fold probabilities for this problem, ``(n, classes)``.
            labels: Gold class ids, ``(n,)``.
            extra: More feature blocks for the estimators (e.g. other problems' probabilities), name -> ``(n, k)``.
        """
        labels = np.asarray(labels)
        self.model_order = list(own)
        self.num_classes = next(iter(own.values())).shape[1]
        features = {**{f"{m}": own[m] for m in self.model_order}, **dict(extra or {})}
        self.feature_order = list(features)
        self.background = {name: np.asarray(v, dtype=np.float64).mean(0).tolist() for name, v in features.items()}
        matrix = _stack(features, self.feature_order)
        blocks = [np.asarray(own[m]) for m in self.model_order]
        n_folds = min(self.cv, int(np.bincount(labels).max()))
        calibrate = self.calibration_method != "none"
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=self.seed) if n_folds >= 2 else None
        out_of_fold: dict[str, np.ndarray] = {}
        if len(self.candidates) > 1 and splitter is not None:
            for method in self.candidates:
                out_of_fold[method] = self._out_of_fold(method, splitter, matrix, blocks, labels)
                predictions = out_of_fold[method].argmax(1)
                self.scores[method] = float(f1_score(labels, predictions, average="macro"))
            self.method = max(self.candidates, key=lambda m: (self.scores[m], -META_METHODS.index(m)))
        else:
            self.method = self.candidates[0]
        self.estimator = None if self.method in RULES else clone(ESTIMATORS[self.method]).fit(matrix, labels)
        self.calibration = ProblemCalibration()
        if calibrate and splitter is not None:  # fitted on the chosen method's out-of-fold probabilities only
            if self.method not in out_of_fold:
                out_of_fold[self.method] = self._out_of_fold(self.method, splitter, matrix, blocks, labels)
            self.calibration = choose_calibration(
                out_of_fold[self.method], labels, self.calibration_method, cv=self.cv, seed=self.seed
            )
        return self

    def _out_of_fold(self, method, splitter, matrix, blocks, labels) -> np.ndarray:
        """The method's probabilities for every row, each from a meta-estimator fitted without it."""
        proba = np.zeros((len(labels), self.num_classes))
        for fit_idx, val_idx in splitter.split(matrix, labels):
            estimator = None
            if method not in RULES:
                estimator = clone(ESTIMATORS[method]).fit(matrix[fit_idx], labels[fit_idx])
            proba[val_idx] = self._predict_with(method, estimator, [b[val_idx] for b in blocks], matrix[val_idx])
        return proba

    def predict_proba(
        self,
        own: Mapping[str, np.ndarray],
        extra: Mapping[str, np.ndarray] | None = None,
        *,
        calibrated: bool = True,
    ) -> np.ndarray:
        """Class probabilities from the base models' probabilities (same names as in :meth:`fit`).

        With ``calibrated`` (the default) the calibration map is applied (none fitted: the probabilities as they
        are); ``calibrated=False`` gives the meta-estimator's own output.
        """
        if self.method is None:
            raise RuntimeError("fit the stacker first")
        features = {**dict(own), **dict(extra or {})}
        missing = [name for name in self.feature_order if name not in features]
        if missing:
            raise ValueError(f"missing feature blocks {missing}")
        matrix = _stack(features, self.feature_order)
        raw = self._predict_with(self.method, self.estimator, [np.asarray(own[m]) for m in self.model_order], matrix)
        return self.calibration.apply(raw) if calibrated else raw


def fit_stackers(
    probabilities: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    *,
    candidates: Sequence[str] | Mapping[str, Sequence[str]] = META_METHODS,
    features: str = "own",
    cv: int = 5,
    seed: int = 0,
    calibration: str = "none",
    shared: Mapping[str, str] | None = None,
) -> dict[str, ProblemStacker]:
    """Fit one :class:`ProblemStacker` per problem on out-of-fold probabilities.

    Args:
        probabilities: Base model name -> problem -> out-of-fold probabilities ``(n, classes)``.
        labels: Problem -> gold class ids ``(n,)``.
        candidates: Methods to choose from, for every problem or per problem (one method fixes it).
        features: ``"own"`` (that problem's probabilities) or ``"all"`` (every problem's, from every model).
        cv: Folds of the selection.
        seed: Seed of the selection folds.
        calibration: The calibration of every problem's scores (see :class:`ProblemStacker`).
        shared: Problem -> the problem whose meta-estimator it takes when both read the same probabilities with the
            same labels (motivational in subtask C under ``share_motivational``): one choice for both, since a second
            selection on identical data could only differ by its folds' noise. Where the inputs or labels differ, the
            problem's method is chosen on its own.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 40)
        >>> probabilities = {"a": {"motivational": np.eye(2)[y] * 0.6 + 0.2}}
        >>> probabilities["a"]["motivational_intensity"] = probabilities["a"]["motivational"]
        >>> stackers = fit_stackers(probabilities, {"motivational": y, "motivational_intensity": y},
        ...                         candidates=["average", "logistic_regression"],
        ...                         shared={"motivational_intensity": "motivational"})
        >>> stackers["motivational_intensity"] is stackers["motivational"]
        True
    """
    if features not in ("own", "all"):
        raise ValueError(f"features must be 'own' or 'all', got {features!r}")
    shared = {p: t for p, t in (shared or {}).items() if p in labels and t in labels and t not in (shared or {})}
    out = {}
    for problem in sorted(labels, key=lambda p: p in shared):  # the shared problems after the ones they take from
        y = labels[problem]
        if problem in shared and _same_inputs(probabilities, labels, problem, shared[problem]):
            out[problem] = out[shared[problem]]
            continue
        models = [m for m, per_problem in probabilities.items() if problem in per_problem]
        if not models:
            raise ValueError(f"no base model predicts {problem!r}")
        own = {m: probabilities[m][problem] for m in models}
        extra = {}
        if features == "all":
            extra = {f"{m}:{p}": v for m, per in probabilities.items() for p, v in per.items() if p != problem}
        chosen = candidates[problem] if isinstance(candidates, Mapping) else candidates
        stacker = ProblemStacker(chosen, cv=cv, seed=seed, calibration_method=calibration)
        out[problem] = stacker.fit(own, np.asarray(y), extra)
    return {problem: out[problem] for problem in labels}


def _same_inputs(
    probabilities: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray], one: str, other: str
) -> bool:
    """Whether problems ``one`` and ``other`` have the same labels and every model the same probabilities for both."""
    if not np.array_equal(np.asarray(labels[one]), np.asarray(labels[other])):
        return False
    for per_problem in probabilities.values():
        if (one in per_problem) != (other in per_problem):
            return False
        if one in per_problem and not np.array_equal(per_problem[one], per_problem[other]):
            return False
    return True


def with_aliases(probabilities: Mapping[str, np.ndarray], aliases: Mapping[str, str] | None) -> dict[str, np.ndarray]:
    """A base model's probabilities per problem, plus the problems it serves through ``aliases``.

    ``aliases`` maps a problem to the problem whose probabilities it reads (motivational in subtasks B and C).

    Examples:
        >>> sorted(with_aliases({"motivational": np.ones((1, 2))}, {"motivational_intensity": "motivational"}))
        ['motivational', 'motivational_intensity']
    """
    return {**probabilities, **{alias: probabilities[target] for alias, target in (aliases or {}).items()}}


def feature_blocks(
    problem: str,
    feature_order: Sequence[str],
    model_order: Sequence[str],
    base: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """A problem's meta-estimator inputs, block by block in ``feature_order``, from the base models' probabilities.

    A block named after a model of ``model_order`` is that model's probabilities for ``problem``; a block
    ``"<model>:<other problem>"`` (``features="all"``) is that model's for the other problem.

    Examples:
        >>> base = {"a": {"humour": np.ones((1, 2)), "sarcasm": np.zeros((1, 2))}}
        >>> sorted(feature_blocks("humour", ["a", "a:sarcasm"], ["a"], base))
        ['a', 'a:sarcasm']
    """
    out = {}
    for block in feature_order:
        if block in model_order:
            out[block] = base[block][problem]
        else:
            model_name, _, other = block.partition(":")
            out[block] = base[model_name][other]
    return out


def combine_stackers(
    stackers: Mapping[str, ProblemStacker], base: Mapping[str, Mapping[str, np.ndarray]], *, calibrated: bool = True
) -> dict[str, np.ndarray]:
    """Final class probabilities per problem: each problem's stacker over the base models' probabilities.

    Args:
        stackers: Problem -> fitted :class:`ProblemStacker`.
        base: Base model name -> problem -> probabilities ``(n, classes)``.
        calibrated: Apply each stacker's calibration map (``False``: the meta-estimators' own outputs).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> base = {"a": {"humour": rng.dirichlet([1, 1], 8)}, "b": {"humour": rng.dirichlet([1, 1], 8)}}
        >>> stackers = fit_stackers(base, {"humour": np.array([0, 1] * 4)}, candidates=["average"], cv=2)
        >>> combine_stackers(stackers, base)["humour"].shape
        (8, 2)
    """
    out = {}
    for problem, stacker in stackers.items():
        blocks = feature_blocks(problem, stacker.feature_order, stacker.model_order, base)
        own = {name: blocks.pop(name) for name in stacker.model_order}
        out[problem] = stacker.predict_proba(own, blocks, calibrated=calibrated)
    return out
