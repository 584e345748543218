"""The ensemble recipe's trainings as independent jobs: one after another here, or as Ray tasks on GPUs and nodes.

The paper's ensemble is 72 base models x (5 folds + a refit), about 7,900 trainings with its hyperparameter
selection, each with a batch of 8-16 memes: nothing worth splitting across GPUs inside one training, and a great
deal to run side by side. A :class:`TrainingJob` is one base model (its folds and refit) or one search candidate
(a learning rate of the visual grid, an Optuna study of a textual model), trained into its own folder. The
folder is the job's checkpoint: a finished job is read back, not run again, and an unfinished one resumes from
its finished folds, whichever engine ran it before.

A job carries typed objects: the member's entry (:class:`~hf_memotion.families.ModelEntry`, its spec inside), the
run's options (:class:`~hf_memotion.training.runs.MemberRun`) and its action (a module-level function: its family's
training, or a search's study), so a Ray worker receives it whole.

Engines (``jobs.engine`` of the config, :class:`~hf_memotion.recipe.specs.JobsSpec`):

- ``sequential`` (the default): in this process, in order (under ``accelerate launch`` each training is
  data-parallel over the launched processes, as before);
- ``ray``: Ray tasks, each reserving ``cpus_per_job`` cores and ``gpus_per_job`` GPUs (default: one GPU where Ray
  sees GPUs). A local Ray is started when ``address`` is not given (every GPU of this machine, one job each);
  ``address: auto`` joins the cluster this machine belongs to. Every worker loads the data itself (the same
  seeded splits) and works in the driver's working directory, so on a cluster the data and the output folder
  must sit on a file system every node sees at the same path.

Ray is the scheduler (placement, retries of lost workers, the cluster); what is written here is only the job
description and the call. A job seeds its own trainings (folds and refit set their seeds), so where it runs
does not change what it computes.

Examples:
    >>> from hf_memotion.families import ModelEntry, parse_member
    >>> entry = ModelEntry.of(parse_member({"name": "text", "problems": ["humour"]}))
    >>> job = TrainingJob("text", "/tmp/hf_memotion_doc_jobs/text", entry, MemberRun(), print)
    >>> job.describe()
    'text: train text model -> /tmp/hf_memotion_doc_jobs/text'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import datasets

from hf_memotion.distributed import process_state
from hf_memotion.logs import configure_logging
from hf_memotion.training.runs import MemberRun

if TYPE_CHECKING:
    from hf_memotion.families import ModelEntry

__all__ = ["TrainingJob", "run_jobs"]

logger = logging.getLogger(__name__)

_DATA_CACHE: dict[str, datasets.DatasetDict] = {}


@dataclass
class TrainingJob:
    """One training of the recipe, into its own folder.

    Attributes:
        name: What the logs call it (``"bert-humour"``, ``"vision/lr_0.01"``).
        folder: The job's folder (its checkpoint).
        entry: The member it trains (the candidate's values already in its spec).
        options: The run's options (folds, seed, refit...).
        action: What runs it, ``action(data, folder, entry, options)``: a module-level function (a Ray worker
            receives it by name), its family's training or a search's study.
        kind: ``"train"`` (a base model's folds, and its refit unless a search candidate) or ``"search"``.
    """

    name: str
    folder: str
    entry: ModelEntry
    options: MemberRun
    action: Callable[..., Any]
    kind: Literal["train", "search"] = "train"

    def describe(self) -> str:
        """One line for the logs."""
        return f"{self.name}: {self.kind} {self.entry.spec.family} model -> {self.folder}"

    def run(self, data: datasets.DatasetDict) -> None:
        """Train (results land in :attr:`folder`; nothing is returned, nothing stays in memory)."""
        self.action(data, self.folder, self.entry, self.options)


def _ray_task(job: TrainingJob, load: Callable[[], datasets.DatasetDict], cwd: str, threads: int) -> str:
    """What a Ray worker runs: the driver's folder, the data (loaded once per worker), the job."""
    import torch

    os.chdir(cwd)
    os.environ.setdefault("TQDM_DISABLE", "1")  # the driver shows one bar over the jobs
    configure_logging()
    torch.set_num_threads(max(1, threads))
    key = repr(load)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load()
    job.run(_DATA_CACHE[key])
    return job.name


def _run_with_ray(jobs: Sequence[TrainingJob], load: Callable[[], datasets.DatasetDict], settings: Any) -> None:
    try:
        import ray
    except ImportError:
        raise RuntimeError("jobs.engine 'ray' needs Ray: pip install 'hf-memotion[ray]'") from None
    from tqdm.auto import tqdm

    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if settings.address is None:  # a local Ray: a small object store (jobs pass descriptions, not data)
            options["object_store_memory"] = 256 * 1024**2
        ray.init(address=settings.address, **options)
    try:
        gpus = settings.gpus_per_job
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=settings.cpus_per_job, num_gpus=gpus, max_retries=1)(_ray_task)
        threads = int(settings.cpus_per_job) or 1
        pending = {task.remote(job, load, os.getcwd(), threads): job for job in jobs}
        logger.info("%d jobs submitted to Ray (%s CPU, %s GPU each)", len(pending), settings.cpus_per_job, gpus)
        with tqdm(total=len(pending), desc="jobs", disable=not process_state().is_main_process) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                ray.get(done[0])  # a failed job raises here, as its own error type
                logger.info("job done: %s", job.describe())
                bar.update()
    finally:
        if started:
            ray.shutdown()


def run_jobs(
    jobs: Sequence[TrainingJob],
    load: Callable[[], datasets.DatasetDict],
    settings: Any,
    data: datasets.DatasetDict | None = None,
) -> None:
    """Run every job with the configured engine; each leaves its results in its folder.

    Args:
        jobs: Independent jobs (none reads another's folder while they run).
        load: Loads the recipe's data (picklable, for workers that load it themselves).
        settings: A :class:`~hf_memotion.recipe.specs.JobsSpec`.
        data: The data already loaded here (the sequential engine uses it).
    """
    if not jobs:
        return
    if settings.engine == "ray":
        if process_state().num_processes > 1:
            raise RuntimeError(
                "jobs.engine 'ray' runs each training in one process: start scripts/train.py with "
                "python, not accelerate launch (Ray places the jobs on the GPUs)"
            )
        _run_with_ray(jobs, load, settings)
        return
    if settings.engine != "sequential":
        raise ValueError(f"jobs.engine must be 'sequential' or 'ray', got {settings.engine!r}")
    data = load() if data is None else data
    for number, job in enumerate(jobs, 1):
        logger.info("job %d/%d %s", number, len(jobs), job.describe())
        job.run(data)
