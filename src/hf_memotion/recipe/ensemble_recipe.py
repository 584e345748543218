"""What ``scripts/train.py`` runs: base models, stacking, evaluation, the ensemble repo and the report.

Steps (Section 4 of the Memotion paper):

1. load the data (a Memotion folder, a Hub dataset, or the demo data);
2. train every base model of the config with k-fold cross-validation (out-of-fold probabilities
   for every training row, refit, held-out probabilities), each in ``models/<name>/`` and resumable;
3. fit the meta-estimators per problem on the out-of-fold probabilities: of all models (the
   modality ensemble) and of each family's members alone (for the ablation);
4. score every base model, each family's ensemble and the full ensemble on the held-out split
   (Table 7), record the chosen meta-estimators (Table 8);
5. measure what bf16 changes on the held-out split (``dtype="auto"`` reads it);
6. write ``ensemble/`` (``pipeline("meme-emotion", model=...)`` loads it), ``report.md``,
   ``report.json``, ``answer.txt`` (official submission of the held-out split) and plots.

Memory is bounded by the largest base model, not by how many there are: each model is freed once saved
(``keep_model=False``), the bf16 check loads the saved models one at a time, and ``ensemble/`` is assembled
from the saved folders without loading them: its base-model files are **hard links** to
``models/<name>/model/`` (a copy where the file system cannot link), so the weights are on disk once.
A re-run writes new files rather than rewriting the old ones in place, so an ensemble folder kept from an
earlier run keeps its own weights.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from hf_memotion.data.memotion import write_answer_file
from hf_memotion.decoding import compare_decodings
from hf_memotion.distributed import process_state
from hf_memotion.ensemble import MemotionEnsembleConfig, MemotionEnsembleModel
from hf_memotion.ensemble.configuration_memotion_ensemble import EnsembleMember
from hf_memotion.ensemble.inference_dtype import auto_choice
from hf_memotion.ensemble.stacking import combine_stackers
from hf_memotion.families import SHARED_PROBLEMS, MemberRun, expand_models, get_family
from hf_memotion.io_utils import atomic_write_text, check_run_folder
from hf_memotion.metrics import memotion_scores
from hf_memotion.metrics.calibration import compare_calibration
from hf_memotion.metrics.tables import format_table7
from hf_memotion.recipe.selection import train_with_selection
from hf_memotion.recipe.specs import EnsembleRunSpec
from hf_memotion.recipe.splits import RecipeData
from hf_memotion.reporting.ensemble_report import plot_reliability, plot_scores, render_report
from hf_memotion.specs import spec_to_dict
from hf_memotion.tasks import PROBLEM_NAMES
from hf_memotion.training.runs import data_provenance

__all__ = ["TrainingReport", "ensemble_folder", "print_training_summary", "run_training"]

logger = logging.getLogger(__name__)


class TrainingReport(dict):
    """``report.json`` as a dict: ``table7`` (rows of macro-F1), ``table8`` (method per problem), settings.

    ``table8_shared`` names the problems whose meta-estimator is another's (``{problem: problem it takes from}``):
    under ``share_motivational``, subtask C's motivational reads B's probabilities with B's labels, so one method is
    chosen for both.
    """


def _scores(probabilities: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    shared = {p: v for p, v in probabilities.items() if p in labels}
    return memotion_scores({p: v.argmax(-1) for p, v in shared.items()}, {p: labels[p] for p in shared})


def _bf16_check(
    ensemble: MemotionEnsembleModel, held_out: datasets.Dataset, when: bool | str, models: Path
) -> dict | None:
    """Record in ``ensemble`` what bf16 changes on the held-out split (``dtype="auto"`` reads it); ``None``: skipped.

    The base models are loaded from ``models/<name>/model`` one at a time (never all at once).
    """
    import torch

    from hf_memotion.hardware import native_bf16

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if when is False or (when == "auto" and not native_bf16(device)):
        logger.info(
            "bf16 check skipped (%s): dtype='auto' will predict in fp32",
            "bf16_check: false" if when is False else f"no native bf16 on {device}",
        )
        return None
    check = ensemble.check_dtype(
        held_out, load=lambda m: get_family(m.family).load(str(models / m.name / "model")), device=device
    )
    changes = {k: round(v, 4) for k, v in check["macro_f1_change"].items()}
    logger.info(
        "bf16 on the held-out split: macro-F1 change %s, largest probability change %.4f (%s)",
        changes,
        check["max_probability_change"],
        "accuracy check passed" if check["passed"] else "accuracy check failed: dtype='auto' stays fp32",
    )
    return check


def run_training(config: Mapping[str, Any] | EnsembleRunSpec, *, source: str | None = None) -> TrainingReport:
    """Train base models (after their hyperparameter search), fit the modality ensemble, evaluate, write the folder.

    Args:
        config: An :class:`~hf_memotion.recipe.specs.EnsembleRunSpec` or a mapping of one (a YAML
            config): ``data``, ``output_dir``, ``seed``, ``n_splits``, ``holdout``, ``processes``, ``models``
            (``name``, ``family``, ``layout``, ``search`` and that family's settings), ``stacking``,
            ``share_motivational``, ``evaluation``, ``jobs`` and ``bf16_check``.
        source: The config's file, named in errors.
    """
    spec = config if isinstance(config, EnsembleRunSpec) else EnsembleRunSpec.from_dict(config, source=source)
    settings = spec_to_dict(spec) if isinstance(config, EnsembleRunSpec) else dict(config)
    settings.pop("data", None)
    state = process_state()
    if spec.processes is not None and int(spec.processes) != state.num_processes:
        raise RuntimeError(
            f"the config asks for {spec.processes} processes but {state.num_processes} were launched; on CPU use "
            "`accelerate launch --multi_gpu --num_processes N` with ACCELERATE_USE_CPU=1 (or torchrun)"
        )
    declared = spec.models
    if not declared:
        raise ValueError("the config lists no base models under 'models'")
    names = [m.name for m in declared]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"every model needs a unique name, got {names}")
    models = expand_models(declared, spec.share_motivational)
    seed = spec.seed
    output = Path(spec.output_dir)
    check_run_folder(output, ("models", "report.json", "ensemble"), "an ensemble training run")
    evaluation = spec.evaluation
    load = RecipeData(
        section=dict(spec.data or {"demo": {}}),
        source=source,
        seed=seed,
        holdout=float(spec.holdout),
        split=evaluation.split,
        dev_fraction=float(evaluation.dev_fraction),
        dev_file=evaluation.dev_file,
    )
    data = load()
    train_labels = {p: np.asarray(data["train"][p]) for p in PROBLEM_NAMES}
    test_labels = {p: np.asarray(data["test"][p]) for p in PROBLEM_NAMES}
    results, selections = train_with_selection(
        models,
        output / "models",
        load,
        MemberRun(n_splits=int(spec.n_splits), seed=seed, test_time=evaluation.test_time),
        jobs=spec.jobs,
        data=data,
    )
    stacking = spec.stacking
    oof = {name: r.oof_probabilities for name, r in results.items()}
    held_out = {name: r.test_probabilities for name, r in results.items()}
    single = {name: r.single_model_probabilities for name, r in results.items()}  # the refit models, as one model
    rows = []  # one row per declared model (its per-problem models merged), as in Table 7
    for entry in declared:
        group = [m.name for m in models if m.group == entry.name]
        merged = {p: v for name in group for p, v in single[name].items()}
        refit = [
            results[name].refit_test_probabilities is not None or evaluation.test_time == "refit" for name in group
        ]
        row = {
            "name": entry.name,
            "family": entry.family,
            "scores": _scores(merged, test_labels),
            "scored": "refit" if all(refit) else "fold_mean" if not any(refit) else "mixed",
        }
        chosen = {
            m.name: selections[m.name]["chosen"] for m in models if m.group == entry.name and m.name in selections
        }
        if chosen:
            row["selected"] = chosen
        rows.append(row)
        if evaluation.test_time == "fold_average" and evaluation.fold_mean_rows:
            mean = {p: v for m in models if m.group == entry.name for p, v in held_out[m.name].items()}
            rows.append(
                {
                    "name": f"{entry.name} (fold mean)",
                    "family": entry.family,
                    "scores": _scores(mean, test_labels),
                    "scored": "fold_mean",
                }
            )

    def subset_scores(members: list[str]) -> dict[str, float]:
        """Held-out scores of the stacking of ``members`` alone, on the problems they predict."""
        covered = {p: y for p, y in train_labels.items() if any(p in oof[m] for m in members)}
        stackers = stacking.fit({m: oof[m] for m in members}, covered, seed=seed, shared=spec.share_motivational)
        return _scores(combine_stackers(stackers, {m: held_out[m] for m in members}), test_labels)

    members_of: dict[str, list[str]] = {}  # family -> its members, families in name order
    for entry in sorted(models, key=lambda e: e.spec.family):
        members_of.setdefault(entry.spec.family, []).append(entry.name)
    for family, members in members_of.items():
        rows.append(
            {"name": f"ensemble ({get_family(family).label})", "family": family, "scores": subset_scores(members)}
        )
    unimodal = {f: set(members) for f, members in members_of.items() if len(get_family(f).reads) == 1}
    if 1 < len(unimodal) < len(members_of):  # the same stacking without the joint members
        scores = subset_scores([e.name for e in models if any(e.name in names for names in unimodal.values())])
        rows.append({"name": "ensemble (unimodal members)", "family": "unimodal", "scores": scores})
    stackers = stacking.fit(oof, train_labels, seed=seed, shared=spec.share_motivational)
    uncalibrated = combine_stackers(stackers, held_out, calibrated=False)
    final = {p: stackers[p].calibration.apply(v) for p, v in uncalibrated.items()}  # what predict_proba gives
    rows.append({"name": "ensemble all (modality ensemble)", "family": "all", "scores": _scores(final, test_labels)})
    table8 = {p: s.method for p, s in stackers.items()}
    report = TrainingReport(
        table7=rows,
        table8=table8,
        table8_shared={p: t for p, t in SHARED_PROBLEMS.items() if p in stackers and stackers[p] is stackers.get(t)},
        decoding=compare_decodings(final, test_labels),
        calibration=compare_calibration(
            uncalibrated, final, test_labels, {p: s.calibration.method for p, s in stackers.items()}
        ),
        selection_scores={p: s.scores for p, s in stackers.items()},
        oof_scores={name: r.oof_scores for name, r in results.items()},
        search={name: {k: v for k, v in chosen.items() if k != "folder"} for name, chosen in selections.items()},
        protocol={
            "evaluation_split": evaluation.split,
            "test_time": evaluation.test_time,
            "share_motivational": spec.share_motivational,
            "table7_columns": evaluation.columns,
            "trainings": sum(len(r.fold_metrics) + 1 for r in results.values())
            + sum(int(c["trainings"]) - int(spec.n_splits) for c in selections.values()),  # the winner's: adopted
        },
        settings=settings,
        members={m.name: get_family(m.family).card_facts(m) for m in declared},
        n_train=len(data["train"]),
        n_test=len(data["test"]),
        data=data_provenance(data["train"]),
    )
    if state.is_main_process:
        ensemble_config = MemotionEnsembleConfig(
            problems=list(PROBLEM_NAMES),
            features=stacking.features,
            base_models=[
                EnsembleMember(e.name, e.spec.family, e.name, e.served_problems, e.aliases).to_dict() for e in models
            ],
        )
        # no base model in memory: the check loads them one at a time, the folder links their saved files
        ensemble = MemotionEnsembleModel(ensemble_config, stackers=stackers)
        check = _bf16_check(ensemble, data["test"], spec.bf16_check, output / "models")
        if check is not None:
            report["bf16_check"] = check
        ensemble.card_data.update(**report)  # the card is written by save_pretrained, from the report's numbers
        ensemble.save_pretrained(
            output / "ensemble", base_model_folders={e.name: output / "models" / e.name / "model" for e in models}
        )
        write_answer_file({p: final[p].argmax(-1) for p in PROBLEM_NAMES}, output / "answer.txt")
        plots = plot_scores(output, rows, final, test_labels, model_name="the modality ensemble (all models)")
        plots += plot_reliability(output, uncalibrated, final, test_labels)
        atomic_write_text(output / "report.json", json.dumps(report, indent=2, default=str))
        atomic_write_text(output / "report.md", render_report(report, plots))
    state.wait_for_everyone()
    return report


def print_training_summary(report: Mapping[str, Any], spec: EnsembleRunSpec) -> None:
    """Print Table 7, the chosen meta-estimators and where the outputs are (what ``scripts/train.py`` shows)."""
    output = Path(spec.output_dir)
    print(format_table7(report["table7"], columns=spec.evaluation.columns))
    print("meta-estimators:", ", ".join(f"{p}={m}" for p, m in report["table8"].items()))
    if report.get("bf16_check"):
        check = report["bf16_check"]
        worst = max(abs(v) for v in check["macro_f1_change"].values())
        device = check.get("device", "cpu").split(",")[0]
        dtype, reason = auto_choice(check, device)
        print(
            f"bf16 check on the held-out split: largest macro-F1 change {worst:.4f}; dtype='auto' on {device}: "
            f"{str(dtype).removeprefix('torch.')} ({reason})"
        )
    if report.get("decoding"):
        alone, joint = report["decoding"]["independent"], report["decoding"]["joint"]
        print(
            f"B and C read together (joint, the pipeline's default): memes with a contradiction "
            f"{alone['contradictions']:.1%} -> {joint['contradictions']:.1%}; B macro-F1 {alone['subtask_b']:.3f} -> "
            f"{joint['subtask_b']:.3f}, C {alone['subtask_c']:.3f} -> {joint['subtask_c']:.3f}"
        )
    if report.get("calibration", {}).get("subtasks"):
        found = report["calibration"]["subtasks"]
        print(
            "calibrated scores (stacking.calibration): held-out ECE "
            + ", ".join(f"{s} {v['ece_before']:.3f} -> {v['ece_after']:.3f}" for s, v in found.items())
        )
    print(f"ensemble: {output}/ensemble  report: {output}/report.md  submission: {output}/answer.txt")


def ensemble_folder(report: Mapping[str, Any], spec: EnsembleRunSpec) -> dict[str, Path]:
    """``{"ensemble": folder}``: what ``push_to_hub:`` publishes after ``scripts/train.py``."""
    return {"ensemble": Path(spec.output_dir) / "ensemble"}
