"""The three VisE steps as library calls: :func:`mine`, :func:`pretrain`, :func:`evaluate`, each taking its spec.

The scripts (``mine_vise_labels.py``, ``pretrain_vise.py``, ``evaluate_vise.py``) only parse a config into the
spec and call one of these; each also has a ``print_*`` summary, what the script shows when it ends.

Examples:
    >>> from hf_memotion.vise.specs import MiningRunSpec
    >>> spec = MiningRunSpec.from_dict({"data": {"demo": {"output_dir": "/tmp/hf_memotion_doc_posts", "n_posts": 200}},
    ...                                 "output_dir": "/tmp/hf_memotion_doc_mined",
    ...                                 "mining": {"comment_clusters": 8, "reaction_clusters": 4, "embedding_dim": 8}})
    >>> report = mine(spec)
    >>> report["comment_cluster_sizes"]["clusters"], report["reaction_cluster_sizes"]["clusters"]
    (8, 4)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_memotion.data.engagement import resolve_corpus
from hf_memotion.distributed import process_state
from hf_memotion.io_utils import atomic_write_text, check_run_folder
from hf_memotion.specs import load_run_config
from hf_memotion.vise.specs import DownstreamTaskSpec, EvaluationRunSpec, MiningRunSpec, PretrainRunSpec

__all__ = [
    "EvaluationPlan",
    "MiningPlan",
    "evaluate",
    "mine",
    "paper_table",
    "plan_evaluation",
    "plan_mining",
    "pretrain",
    "print_evaluation_plan",
    "print_evaluation_summary",
    "print_mining_plan",
    "print_mining_summary",
    "print_pretraining_summary",
    "read_tasks",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- mining


def mine(spec: MiningRunSpec) -> dict[str, Any]:
    """Mine the pseudo-labels a :class:`MiningRunSpec` describes, on this machine or as a Spark job.

    Returns:
        The report written to ``mining.json``.
    """
    from hf_memotion.vise.mining import mine_labels

    corpus = resolve_corpus(spec.data)
    if spec.engine == "spark":
        from hf_memotion.vise.spark_mining import mine_labels_on_spark

        return mine_labels_on_spark(
            corpus, spec.output_dir, spec.mining, cores=spec.num_proc or 2, memory=spec.spark_memory
        )
    return mine_labels(corpus, spec.output_dir, spec.mining, num_proc=spec.num_proc or 1)


def _sizes(stats: dict) -> str:
    return (
        f"{stats['non_empty']}/{stats['clusters']} used, size min {stats['min']} median {stats['median']:g} "
        f"max {stats['max']}, largest share {stats['largest_share']:.1%}, "
        f"effective clusters {stats['effective_clusters']:.1f}"
    )


#: Measured mining rates (BENCHMARKS.md, "VisE mining": realistic corpora at the paper's settings, k = 5,000 and 128,
#: 256-dimensional phi_C, faiss): step 2 labels 2,498 posts/s per core at 19.5 comments per post, step 1 took 62.2 s
#: on 2 cores for 100,000 held-out comments (K-means' iterations grow with comments x k).
STEP2_POSTS_PER_CORE_SECOND = 2_498.0
STEP2_MEASURED_COMMENTS_PER_POST = 19.5
STEP1_CORE_SECONDS_PER_COMMENT = 62.2 * 2 / 100_000
STEP1_MEASURED_CLUSTERS = 5_000
#: Label shard bytes per post, an upper bound: the id and image reference, then an int32 cluster id and a float32
#: weight per distinct comment cluster (parquet compresses below this; the demo's labels took 75 bytes a post).
LABEL_BYTES_PER_POST = 64
LABEL_BYTES_PER_CLUSTER = 8
#: The paper's corpus statistics (Appendix C.1: 20.25 comments per image on the 1.23M set).
PAPER_COMMENTS_PER_POST = 20.25


@dataclass
class MiningPlan:
    """What :func:`mine` would do for a :class:`MiningRunSpec` (``scripts/mine_vise_labels.py --plan``).

    Attributes:
        posts: Posts in the corpus.
        held_out: Posts that step 1 clusters (``holdout_fraction``), kept out of the labels.
        labelled: Posts step 2 labels (the others, times ``label_fraction``).
        comments_per_post: Comments per post counted with (``max_comments`` caps it).
        step1_core_hours: Step 1 (the embedding and both K-means on the held-out posts) at the measured rate.
        step2_core_hours: Step 2 (every labelled post) at the measured rate.
        label_bytes: The label shards (an upper bound).
        model_bytes: The cluster models (the embedding's projection and both sets of centroids).
        notes: Where the figures come from.
    """

    posts: int
    held_out: int
    labelled: int
    comments_per_post: float
    step1_core_hours: float
    step2_core_hours: float
    label_bytes: int
    model_bytes: int
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        """The plan as a few lines."""
        lines = [
            f"posts: {self.posts:,} ({self.held_out:,} held out for the clusters, {self.labelled:,} labelled), "
            f"{self.comments_per_post:g} comments per post",
            f"step 1 (clusters): {self.step1_core_hours:,.1f} core-hours; step 2 (labels): "
            f"{self.step2_core_hours:,.1f} core-hours; in all {self.step1_core_hours + self.step2_core_hours:,.1f}",
            f"disk: {self.label_bytes / 1e9:,.2f} GB of label shards (at most), {self.model_bytes / 1e6:,.0f} MB of "
            "cluster models",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def plan_mining(spec: MiningRunSpec, *, source: str | None = None) -> MiningPlan:
    """Count what mining ``spec`` would take: posts held out and labelled, core-hours at the measured rates, disk.

    Examples:
        >>> spec = MiningRunSpec.from_dict({"data": {"path": "posts/"}, "plan": {"posts": 270_000_000},
        ...     "mining": {"holdout_fraction": 0.074, "label_fraction": 0.0049}})
        >>> plan = plan_mining(spec)
        >>> plan.held_out, round(plan.labelled, -4)
        (19980000, 1230000)
    """
    settings = spec.mining
    data = dict(spec.data or {})
    posts = (spec.plan or {}).get("posts")
    if posts is None and isinstance(data.get("demo"), Mapping):
        from hf_memotion.data.engagement import DemoEngagementSpec

        posts = DemoEngagementSpec(**{k: v for k, v in data["demo"].items() if k != "output_dir"}).n_posts
    if posts is None:
        raise ValueError("--plan needs the corpus's size: give plan.posts=N (and plan.comments_per_post)")
    posts = int(posts)
    per_post = min(float((spec.plan or {}).get("comments_per_post", PAPER_COMMENTS_PER_POST)), settings.max_comments)
    held_out = round(posts * settings.holdout_fraction)
    labelled = round((posts - held_out) * settings.label_fraction)
    step1 = held_out * per_post * STEP1_CORE_SECONDS_PER_COMMENT * settings.comment_clusters / STEP1_MEASURED_CLUSTERS
    step2 = labelled / (STEP2_POSTS_PER_CORE_SECOND * STEP2_MEASURED_COMMENTS_PER_POST / per_post)
    clusters = min(per_post, settings.comment_clusters)
    from hf_memotion.data.engagement import REACTIONS  # a reaction centroid is a distribution over the buttons

    models = 4 * settings.embedding_dim * (settings.max_features + settings.comment_clusters)
    models += 4 * len(REACTIONS) * settings.reaction_clusters
    notes = [
        "rates measured on this project's 2-core machine (BENCHMARKS.md, VisE mining): step 2 at "
        f"{STEP2_POSTS_PER_CORE_SECOND:,.0f} posts/s per core, step 1 at {STEP1_CORE_SECONDS_PER_COMMENT * 1e3:.2f} "
        "core-ms per held-out comment at k = 5,000; the paper mined in about 9 hours on 144 CPUs"
    ]
    if settings.comment_encoder:
        notes.append(f"comment_encoder {settings.comment_encoder}: the rates are TF-IDF's; an encoder costs more")
    return MiningPlan(
        posts=posts,
        held_out=held_out,
        labelled=labelled,
        comments_per_post=per_post,
        step1_core_hours=step1 / 3600,
        step2_core_hours=step2 / 3600,
        label_bytes=int(labelled * (LABEL_BYTES_PER_POST + LABEL_BYTES_PER_CLUSTER * clusters)),
        model_bytes=int(models),
        notes=notes,
    )


def print_mining_plan(plan: MiningPlan) -> None:
    """Print :meth:`MiningPlan.format`."""
    print(plan.format())


def print_mining_summary(report: dict[str, Any], spec: MiningRunSpec) -> None:
    """Print the counts and the cluster-size statistics of a mining run."""
    print(
        f"labelled {report['posts_labelled']} posts ({report['holdout']['holdout_posts']} held out for clustering); "
        f"{report['posts_without_comments']} without comments, {report['posts_without_reactions']} without "
        f"reactions, {report['malformed_rows']} malformed rows skipped"
    )
    extra = ", ".join(f"{k} ({n} posts)" for k, n in sorted(report.get("extra_reaction_keys", {}).items()))
    print(
        f"{report.get('comments_without_signal', 0)} sampled comments without a known word or emoji (no cluster); "
        f"{report.get('posts_without_comment_signal', 0)} posts whose comments all lacked one; extra reaction keys "
        f"ignored: {extra or 'none'} ({report.get('engine', 'local')} engine)"
    )
    print("comment clusters: " + _sizes(report["comment_cluster_sizes"]))
    print("reaction clusters: " + _sizes(report["reaction_cluster_sizes"]))
    print(f"labels: {spec.output_dir}/labels-*.parquet  report: {spec.output_dir}/mining.json")


# ------------------------------------------------------------------------------------------------- pretraining


def _labels(spec: PretrainRunSpec) -> str:
    """The labels folder: given, or mined first from the named mining config (one process mines)."""
    if spec.data.labels is not None:
        return spec.data.labels
    mining = MiningRunSpec.from_dict(load_run_config(spec.data.mine), source=spec.data.mine)
    state = process_state()
    with state.main_process_first():  # one process mines; the others then find it finished
        if state.is_main_process:
            mine(mining)
    return mining.output_dir


def pretrain(spec: PretrainRunSpec) -> dict[str, Any]:
    """Pretrain the VisE backbone a :class:`PretrainRunSpec` describes (mining first when asked); plot the losses.

    Returns:
        The report written to ``pretraining.json``.
    """
    from hf_memotion.vise.pretraining import plot_pretraining_curves, pretrain_vise

    output = Path(spec.output_dir)
    report = pretrain_vise(_labels(spec), output, spec.pretraining, resume=spec.resume, license=spec.license)
    if process_state().is_main_process:
        plot_pretraining_curves(report["curves"], output / "loss_curves.png")
    return report


def print_pretraining_summary(report: dict[str, Any], spec: PretrainRunSpec) -> None:
    """Print the first and last values of both losses and where the backbone is."""
    curves = report["curves"]
    if curves:
        first, last = curves[0], curves[-1]
        for name in ("loss", "comment_loss", "reaction_loss"):
            if name in first and name in last:
                print(f"{name:<14} {first[name]:.4f} (step {first['step']}) -> {last[name]:.4f} (step {last['step']})")
    output = Path(spec.output_dir)
    print(f"backbone: {output / 'backbone'}  (AutoModel.from_pretrained)   report: {output / 'pretraining.json'}")


# ------------------------------------------------------------------------------------------------- evaluation


def read_tasks(entries: list[DownstreamTaskSpec], selection: str = "held_out") -> list[tuple[Any, DownstreamTaskSpec]]:
    """``(DownstreamTask, its DownstreamTaskSpec)`` for each task entry (demo tasks are generated first).

    ``selection`` reaches the readers that have a choice (Hateful Memes, CUB).
    """
    import inspect

    from hf_memotion.data.downstream import TASK_READERS, read_task
    from hf_memotion.data.downstream_demo import make_demo_downstream

    tasks = []
    for entry in entries:
        root = entry.path
        if entry.demo is not None:
            demo = dict(entry.demo)
            root = make_demo_downstream(
                demo.pop("output_dir", f"outputs/vise_tasks_demo/{entry.format}"), entry.format, **demo
            )
        options = dict(entry.options)
        reader = TASK_READERS.get(str(entry.format))
        if reader is not None and "selection" in inspect.signature(reader).parameters:
            options.setdefault("selection", selection)
        task = read_task(entry.format, root, **options)
        task.name = entry.name or task.name
        tasks.append((task, entry))
    return tasks


def _display_name(task: str, setting: str, has_text: bool) -> str:
    """The task's name in the tables: a multi-modal task's non-default settings are named."""
    if not has_text or setting == "image_text_frozen":
        return task
    return f"{task} ({setting.replace('_', ' ')})"


def evaluate(spec: EvaluationRunSpec, *, source: str | None = None) -> dict[str, Any]:
    """Run every task x setting x backbone x protocol grid of an :class:`EvaluationRunSpec` and write the report.

    Writes ``results.json`` (every grid point, the chosen one, S_lr and S_wd), ``results.md`` (Tables 6/7-style
    scores and the hyperparameter tables in the form of Tables 10-16), ``results.png`` and ``grids.png``. Finished
    grid points are reused.

    Returns:
        ``rows`` (one per task, setting, backbone and protocol) and ``markdown`` (the report without the plots).
    """
    from hf_memotion.reporting.vise_tables import hyperparameter_table, plot_grids, plot_results, results_table
    from hf_memotion.vise.evaluation import TextEncoder, evaluate_backbone, load_backbone

    backbones = [
        load_backbone(n, b.source, image_size=spec.image_size, pretrained_file=b.pretrained_file, device=spec.device)
        for n, b in spec.backbones.items()
    ]
    logger.info("VisE protocols on %s", backbones[0].model.device if backbones else spec.device)
    output = Path(spec.output_dir)
    check_run_folder(output, ("results.json", "runs"), "a VisE evaluation")
    rows = []
    for task, entry in read_tasks(spec.tasks, spec.selection):
        encoder = None
        per_backbone = {b.name: spec.combinations(entry, task.has_text, b.name) for b in backbones}
        preprocessing = spec.task_preprocessing(entry)  # one preprocessing for every row of the task
        if any(setting != "image_only" for combos in per_backbone.values() for setting, _ in combos):
            if not entry.text_encoder:
                raise ValueError(f"task {task.name!r} has texts: set its text_encoder (a folder or Hub id)")
            encoder = TextEncoder(str(entry.text_encoder), corpus=task.repeats[0]["train"]["text"], device=spec.device)
        for loaded in backbones:
            backbone = loaded.with_preprocessing(**preprocessing)
            for setting, protocol in per_backbone[loaded.name]:
                settings = spec.protocol_settings(protocol, entry, backbone.name, backbone.model.config.architecture)
                row = evaluate_backbone(
                    backbone,
                    task,
                    protocol,
                    settings,
                    output,
                    encoder,
                    setting=setting,
                    linear_features=spec.linear_features,
                    decode_workers=int(spec.decode_workers),
                )
                row["task"] = _display_name(task.name, setting, task.has_text)
                row["selection"] = spec.selection
                row["group"] = spec.backbones[backbone.name].table_group
                row["reference"] = spec.reference_of(backbone.name)
                row["preprocessing"] = dict(preprocessing)
                logger.info(
                    "%s / %s / %s: test %s %.4g (chosen base LR %g, WD %g; S_lr %.4g, S_wd %.4g)",
                    row["task"],
                    backbone.name,
                    protocol,
                    row["metric"],
                    row[f"test_{row['metric']}_mean"],
                    row["base_lr"],
                    row["weight_decay"],
                    row["s_lr"],
                    row["s_wd"],
                )
                rows.append(row)
    atomic_write_text(output / "results.json", json.dumps(rows, indent=2))
    title = "# VisE downstream evaluation\n"
    notes = [
        f"Config: `{source}`." if source else "",
        f"Selection: `{spec.selection}`; linear features: `{spec.linear_features}`.",
    ]
    if isinstance(spec.reference, Mapping):
        pairs = ", ".join(f"`{ref}` for {group}" for group, ref in spec.reference.items())
        notes.append(f"Differences in parentheses from the reference of the row's own backbone group: {pairs}.")
    elif spec.reference:
        notes.append(f"Differences from `{spec.reference}` in parentheses.")
    notes.append(
        "Every row of a task has the same transforms (evaluation: "
        f"crop_pct {spec.preprocessing['crop_pct']:g}, {spec.preprocessing['interpolation']}; training: random "
        "resized crop and flip), each backbone its own normalisation."
    )
    notes += [f"{t.label}'s schedule: {t.schedule_note}." for t in spec.tasks if t.schedule_note]
    notes += _unverified_notes(spec)
    sections = [title + "\n" + " ".join(n for n in notes if n) + "\n"]
    for heading, protocol in (
        ("Linear evaluation (Table 6 form)", "linear"),
        ("Fine-tuning (Table 7 form)", "finetune"),
    ):
        if any(r["protocol"] == protocol for r in rows):
            sections.append(f"## {heading}\n\n" + results_table(rows, protocol) + "\n")
    sections.append("## Chosen hyperparameters and sensitivity (Tables 10-16 form)\n\n" + hyperparameter_table(rows))
    markdown = "\n".join(sections)
    atomic_write_text(output / "results.md", markdown + "\n\n![results](results.png)\n\n![grids](grids.png)\n")
    plot_results(rows, output / "results.png")
    plot_grids(rows, output / "grids.png")
    return {"rows": rows, "markdown": markdown}


@dataclass
class EvaluationPlan:
    """What :func:`evaluate` would run: every grid point with its schedule (``scripts/evaluate_vise.py --plan``).

    Attributes:
        points: One dict per task x setting x backbone x protocol x grid point: ``task``, ``setting``,
            ``backbone``, ``architecture``, ``protocol``, ``batch_size``, ``epochs``, ``schedule``, ``lr_epochs``,
            ``lr_decay``, ``optimizer``, ``features``, ``base_lr``, ``weight_decay``, ``learning_rate``, ``splits``.
        selection: The run's selection mode.
        compute: One dict per task x setting x backbone x protocol: ``images_seen`` (images through the backbone,
            every split and grid point), ``flops``, ``gpu_hours`` at ``device_tflops`` (``None`` where the task's
            sizes or the architecture are unknown).
        device_tflops: The sustained rate of one device the GPU-hours assume.
        notes: What the estimate assumed.
    """

    points: list[dict[str, Any]]
    selection: str
    compute: list[dict[str, Any]] = field(default_factory=list)
    device_tflops: float = 100.0
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        """Device-hours of every evaluation whose compute is known."""
        return sum(c["gpu_hours"] or 0.0 for c in self.compute)

    def table_rows(self) -> dict[str, list[dict[str, Any]]]:
        """The paper's table rows this plan produces: table -> one entry per task, setting, backbone and protocol.

        A row is ``task``, ``setting``, ``protocol``, ``group`` (the table's backbone column), ``backbone`` and ``kind``
        (how it loads: ``vise``, ``timm``, ``random``, ``moco``, ``clip``...); evaluations outside the paper's tables
        (a demo task) are left out.
        """
        out: dict[str, list[dict[str, Any]]] = {}
        seen = set()
        for point in self.points:
            key = tuple(point[k] for k in ("task", "setting", "backbone", "protocol"))
            if point.get("table") is None or key in seen:
                continue
            seen.add(key)
            fields = ("task", "setting", "protocol", "group", "backbone", "kind")
            out.setdefault(point["table"], []).append({k: point.get(k) for k in fields})
        return out

    def format(self) -> str:
        """One row per task x setting x backbone x protocol (its grid spelled out), then the totals."""
        lines = [
            "| task | setting | backbone | architecture | protocol | batch | schedule | optimizer | features | "
            "splits | grid: base LR -> LR, x WD |",
            "|---|---|---|---|---|---:|---|---|---|---:|---|",
        ]
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for point in self.points:
            key = tuple(point[k] for k in ("task", "setting", "backbone", "protocol"))
            groups.setdefault(key, []).append(point)
        for (task, setting, backbone, protocol), points in groups.items():
            first = points[0]
            rates = dict.fromkeys(f"{p['base_lr']:g} -> {p['learning_rate']:.3g}" for p in points)
            decays = dict.fromkeys(f"{p['weight_decay']:g}" for p in points)
            lines.append(
                f"| {task} | {setting} | {backbone} | {first['architecture'] or '?'} | {protocol} | "
                f"{first['batch_size']} | {first['schedule']} | {first['optimizer']} | {first['features']} | "
                f"{first['splits']} | {'; '.join(rates)} x WD {', '.join(decays)} |"
            )
        tables = self.table_rows()
        if tables:
            lines += ["", "| paper table | rows | tasks | backbones (kind) |", "|---|---:|---|---|"]
            for table, rows in sorted(tables.items(), key=lambda item: _table_order(item[0])):
                tasks = ", ".join(dict.fromkeys(r["task"] for r in rows))
                backbones = ", ".join(dict.fromkeys(f"{r['backbone']} ({r['kind']})" for r in rows))
                lines.append(f"| {table} | {len(rows)} | {tasks} | {backbones} |")
        trainings = sum(p["splits"] for p in self.points)
        lines += [
            "",
            f"{len(groups)} evaluations, {len(self.points)} grid points, {trainings} trainings "
            f"(grid points x random splits); selection: {self.selection}",
        ]
        if self.compute:
            lines += [
                "",
                "| task | setting | backbone | protocol | image px | GFLOP per image (forward) | images through the "
                f"backbone | PFLOP | GPU-hours at {self.device_tflops:g} TFLOP/s |",
                "|---|---|---|---|---:|---:|---:|---:|---:|",
            ]
            for c in self.compute:
                known = c["gpu_hours"] is not None
                lines.append(
                    f"| {c['task']} | {c['setting']} | {c['backbone']} | {c['protocol']} | {c['image_size']} | "
                    f"{c['forward_gflops']:.2f} | {c['images_seen']:,} | "
                    + (f"{c['flops'] / 1e15:,.1f} | {c['gpu_hours']:,.2f} |" if known else "? | ? |")
                )
            by_task: dict[tuple[str, str], float] = {}
            for c in self.compute:
                key = (c["task"], c["protocol"])
                by_task[key] = by_task.get(key, 0.0) + (c["gpu_hours"] or 0.0)
            lines += [
                "",
                "GPU-hours per task and protocol: "
                + "; ".join(f"{task} {protocol} {hours:,.1f}" for (task, protocol), hours in by_task.items()),
            ]
            lines.append(f"in all: {self.gpu_hours:,.1f} GPU-hours at {self.device_tflops:g} TFLOP/s sustained")
            lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def paper_table(task_format: str | None, setting: str, protocol: str) -> str | None:
    """The VisE paper's table an evaluation is a row of (``None``: none of them).

    Tables 6 and 7 are the linear and fine-tuned results on UnbiasedEmotion, Politics and Hateful Memes (an image
    encoder with a frozen text encoder); Table 2 is CUB; Hateful Memes' other settings are Table 14 (both encoders
    fine-tuned) and Tables 15-16 (image only).

    Examples:
        >>> paper_table("politics", "image_only", "linear"), paper_table("cub", "image_only", "finetune")
        ('Table 6', 'Table 2')
    """
    if task_format == "cub":
        return "Table 2"
    if task_format == "hateful_memes" and setting == "image_text_finetuned":
        return "Table 14"
    if task_format == "hateful_memes" and setting == "image_only":
        return "Tables 15-16"
    if task_format in ("unbiased_emotion", "politics", "hateful_memes"):
        return "Table 6" if protocol == "linear" else "Table 7"
    return None


def _table_order(table: str) -> tuple[int, str]:
    digits = "".join(c for c in table.split("-")[0] if c.isdigit())
    return int(digits or 0), table


#: Images per split of the paper's four tasks (VisE, Section 4.3), for ``--plan`` where a task gives no ``images``.
PAPER_TASK_IMAGES = {
    "unbiased_emotion": {"train": 2_132, "validation": 304, "test": 609},  # 3,045 images, 70/10/20
    # 749,932 images in all; the paper does not give the official test set's size: counted as none (give images:)
    "politics": {"train": 674_939, "validation": 74_993, "test": 0},
    "hateful_memes": {"train": 8_500, "validation": 500, "test": 500},  # Phase 1: 8,500 train, 500 dev
    "cub": {"train": 5_994, "validation": 0, "test": 5_794},  # the official split of 11,788 images
}


def _task_images(entry: Any) -> tuple[dict[str, int] | None, str | None]:
    """Images per split for the plan, and a note on where they came from (``None``: unknown)."""
    if entry.images:
        return {k: int(entry.images.get(k, 0)) for k in ("train", "validation", "test")}, None
    if entry.demo is not None:
        from hf_memotion.data.downstream_demo import _THEMES

        total = int(dict(entry.demo).get("n_per_class", 30)) * len(_THEMES)
        sizes = {"train": round(total * 0.7), "validation": round(total * 0.1), "test": round(total * 0.2)}
        return sizes, f"{entry.label}: a demo task, {total} images counted as 70/10/20"
    if entry.format in PAPER_TASK_IMAGES:
        sizes = dict(PAPER_TASK_IMAGES[entry.format])
        return sizes, f"{entry.label}: the paper's release sizes {sizes}"
    return None, f"{entry.label}: sizes unknown (give the task images: {{train: N, validation: N, test: N}})"


def _forward_flops(architecture: str, image_size: int, cache: dict[tuple[str, int], int]) -> int:
    """Forward FLOPs of one image through a VisE backbone of ``architecture`` (counted under fake tensors)."""
    key = (architecture, image_size)
    if key not in cache:
        import torch

        from hf_memotion.benchmarking import count_flops, fake_model
        from hf_memotion.models.vise import ViseConfig, ViseModel

        model, mode = fake_model(lambda: ViseModel(ViseConfig(architecture=architecture)).eval())
        with mode:
            pixels = torch.zeros(2, 3, image_size, image_size)
            with torch.no_grad():
                cache[key] = count_flops(lambda: model(pixels)) // 2
    return cache[key]


def _group_compute(
    first: Mapping[str, Any], grid: int, sizes: Mapping[str, int] | None, forward: int | None
) -> tuple[int | None, float | None]:
    """Images through the backbone and FLOPs of one evaluation (every split and grid point).

    Cached linear: every image once (the grid shares the features); augmented linear: the training images every
    epoch (once for the whole grid) and the others once; fine-tuning: per grid point, forward and backward (3x a
    forward) over the training images every epoch, and the others once.
    """
    if sizes is None or forward is None:
        return None, None
    train, others = sizes["train"], sizes["validation"] + sizes["test"]
    epochs, splits = int(first["epochs"]), int(first["splits"])
    if first["protocol"] == "linear" and first["features"] == "cached":
        images, passes = train + others, train + others
    elif first["protocol"] == "linear":
        images, passes = epochs * train + others, epochs * train + others
    else:
        images, passes = grid * (epochs * train + others), grid * (3 * epochs * train + others)
    return images * splits, float(passes * splits * forward)


def plan_evaluation(spec: EvaluationRunSpec, *, source: str | None = None) -> EvaluationPlan:
    """Every task x setting x backbone x protocol x grid point an evaluation config would run; reads no data.

    Examples:
        >>> spec = EvaluationRunSpec.from_dict({"backbones": {"r50": "random:resnet50"}, "protocols": ["finetune"],
        ...     "tasks": [{"format": "politics", "path": "data/politics", "schedule": {"epochs": 25,
        ...                "lr_epochs": [10, 20], "lr_decay": 0.1}, "batch_sizes": {"resnet50": 192}}]})
        >>> point = plan_evaluation(spec).points[0]
        >>> point["batch_size"], point["schedule"], round(point["learning_rate"], 6)  # 0.025 / 256 x 192
        (192, '25 epochs, x0.1 at epochs 10, 20', 0.01875)
    """
    from hf_memotion.data.downstream import FORMATS_WITH_TEXT

    points, compute, notes, flops_cache = [], [], [], {}
    for entry in spec.tasks:
        has_text = entry.format in FORMATS_WITH_TEXT
        splits = int(entry.options.get("n_splits", 5 if entry.format == "unbiased_emotion" else 1))
        sizes, note = _task_images(entry)
        if note:
            notes.append(note)
        for name, backbone in spec.backbones.items():
            architecture = backbone.resolved_architecture()
            for setting, protocol in spec.combinations(entry, has_text, name):
                settings = spec.protocol_settings(protocol, entry, name, architecture)
                adamw = settings.uses_adamw(multimodal=setting != "image_only")
                group = [
                    {
                        "task": _display_name(entry.label, setting, has_text),
                        "table": paper_table(entry.format, setting, protocol),
                        "kind": backbone.kind,
                        "group": backbone.table_group,
                        "setting": setting,
                        "backbone": name,
                        "architecture": architecture,
                        "protocol": protocol,
                        "batch_size": settings.batch_size,
                        "epochs": settings.epochs,
                        "schedule": settings.describe_schedule(),
                        "lr_epochs": settings.lr_epochs,
                        "lr_decay": settings.lr_decay,
                        "optimizer": "adamw" if adamw else "sgd",
                        "features": spec.linear_features if protocol == "linear" else "end to end",
                        "base_lr": base,
                        "weight_decay": wd,
                        "learning_rate": settings.learning_rate(base),
                        "splits": splits,
                        "image_size": settings.image_size or spec.image_size,
                    }
                    for wd in settings.weight_decays
                    for base in settings.base_learning_rates
                ]
                points += group
                compute.append(_compute_row(group, sizes, float(spec.device_tflops), flops_cache))
    notes.append(
        "the backbone's FLOPs only (torch's FlopCounterMode on the real architecture); the text encoder, "
        "image decoding and the linear classifiers are left out"
    )
    notes += _unverified_notes(spec)
    notes += [f"{t.label}'s schedule: {t.schedule_note}" for t in spec.tasks if t.schedule_note]
    return EvaluationPlan(points, spec.selection, compute, float(spec.device_tflops), notes)


def _unverified_notes(spec: EvaluationRunSpec) -> list[str]:
    """A note per backbone whose released layout is unverified (its rows are marked so in the plan and report)."""
    from hf_memotion.models.vise.baselines import UNVERIFIED_LAYOUTS

    return [
        f"{name} rows UNVERIFIED: {UNVERIFIED_LAYOUTS[backbone.kind]}"
        for name, backbone in spec.backbones.items()
        if backbone.kind in UNVERIFIED_LAYOUTS
    ]


def _compute_row(
    group: list[dict[str, Any]], sizes: Mapping[str, int] | None, device_tflops: float, cache: dict
) -> dict[str, Any]:
    """The compute of one evaluation (its grid points ``group``): images through the backbone, FLOPs, GPU-hours."""
    from hf_memotion.models.vision.image_processing_memotion import MemotionImageProcessor

    first = group[0]
    architecture = first["architecture"]
    size = first["image_size"] or (MemotionImageProcessor.from_timm(architecture).crop_size if architecture else None)
    forward = _forward_flops(architecture, int(size), cache) if architecture and size else None
    images, flops = _group_compute(first, len(group), sizes, forward)
    return {
        **{k: first[k] for k in ("task", "setting", "backbone", "protocol")},
        "image_size": size,
        "forward_gflops": (forward or 0) / 1e9,
        "images_seen": images or 0,
        "flops": flops,
        "gpu_hours": None if flops is None else flops / (device_tflops * 1e12) / 3600,
    }


def print_evaluation_plan(plan: EvaluationPlan) -> None:
    """Print :meth:`EvaluationPlan.format`."""
    print(plan.format())


def print_evaluation_summary(result: dict[str, Any], spec: EvaluationRunSpec) -> None:
    """Print the report's tables and where its files are."""
    output = Path(spec.output_dir)
    print(result["markdown"])
    print(f"\nresults: {output / 'results.md'}  {output / 'results.json'}  plots: {output / 'results.png'}, grids.png")
