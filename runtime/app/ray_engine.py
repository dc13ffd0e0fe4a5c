"""`mnet run --engine ray`: the images explained by a pool of actors on a Ray cluster (Ray Data), each with its own
`Predictor` (the bundle verified once per actor), while this process (the driver) does everything else exactly as
the local engine does: resume, every file written, every audit record appended, summary.csv in input order. An
actor sends back an image's files in memory (report JSON, heatmap PNG, panel PNG) or what went wrong; a lost
actor is restarted and its images redone by Ray, and since only the driver writes, nothing is written twice.

Ray is imported only when this engine runs: the runtime installs and imports without it (the `ray` extra).
Actors read the images by path, so on a cluster the paths must name the same files on every node (a shared
file system); docs/ray.md has the recipe."""

from __future__ import annotations

import json
import logging
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from runtime.app.batch import BatchStages, Job, deliver_rendered, fail_job
from runtime.app.console import console
from runtime.errors import ConfigError, MnetError, ToolMissing
from runtime.options import ImageOptions
from runtime.outputs import unexpected_failure
from runtime.report import report_json
from runtime.report.render import Rendered, render_outputs

# Images per actor call: small, so that a lost actor costs little and results stream back steadily.
BATCH_SIZE = 4
RAY_EXTRA = "pip install 'melanomanet-edge[ray]' (Ray Data, locked in requirements/dev.txt)"


@dataclass(frozen=True)
class PredictorSpec:
    """How each actor opens its predictor: the bundle (an absolute path every node can read) and the
    `Predictor` arguments, the same as the local engine's."""

    model: Path
    settings: dict = field(default_factory=dict)

    def open(self):
        from runtime.predictor import Predictor

        return Predictor(self.model, **self.settings)


@dataclass(frozen=True)
class RaySettings:
    """--address (None: start a Ray on this machine for the run), --actors (None: as many as the cluster's
    CPUs, or GPUs with `gpus_per_actor`, hold), --gpus-per-actor and the CPUs each actor reserves (its ONNX
    Runtime threads)."""

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    cpus_per_actor: int = 1

    def __post_init__(self):
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"--actors {self.actors}: give 1 or more")
        if self.gpus_per_actor < 0:
            raise ConfigError(f"--gpus-per-actor {self.gpus_per_actor}: give 0 (CPU actors) or more")

    def pool_size(self, resources: dict) -> int:
        if self.actors is not None:
            return self.actors
        if self.gpus_per_actor > 0:
            gpus = resources.get("GPU", 0)
            if gpus < self.gpus_per_actor:
                raise ConfigError(f"--gpus-per-actor {self.gpus_per_actor}: the Ray cluster has {gpus:g} GPUs; "
                                  "join one with GPU workers (--address) or leave the option out")
            return max(1, int(gpus // self.gpus_per_actor))
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_actor))


class Explainer:
    """One actor of the pool: its own predictor, opened (and verified) once; each call explains a batch of
    images one at a time, as the local engine does, and returns per image either its files or its failure."""

    def __init__(self, spec: PredictorSpec, cam_class: str | None):
        self.predictor = spec.open()
        self.options = ImageOptions(cam_class)

    def __call__(self, batch: dict) -> dict:
        answers = [self.explain(path) for path in batch["path"]]
        return {"index": batch["index"], **{column: [answer[column] for answer in answers] for column in ANSWER}}

    def explain(self, path: str) -> dict:
        try:
            result = self.predictor.predict_batch([Path(path)], options=[self.options])[0]
            if isinstance(result, Exception):
                raise result
            rendered = render_outputs(result)
            return _answer(report=report_json(rendered.report), heatmap=rendered.heatmap_png,
                           panel=rendered.panel_png)
        except (MnetError, OSError) as error:
            return _answer(error=str(error))
        except Exception as error:
            return _answer(error=str(error), unexpected=type(error).__name__,
                           trace="".join(traceback.format_exception(error)))


# The columns an actor sends back per image: the report's bytes, the heatmap and panel PNGs, or the error (with
# the kind and traceback of an unexpected one).
ANSWER = ("report", "heatmap", "panel", "error", "unexpected", "trace")


def _answer(**given) -> dict:
    return {column: given.get(column, b"" if column in ("report", "heatmap", "panel") else "") for column in ANSWER}


class RayEngine:
    """The batch's `Engine` (runtime.app.batch) on Ray: `__call__` yields each job, in input order, once its
    files are written by this process."""

    def __init__(self, spec: PredictorSpec, settings: RaySettings, cam_class: str | None):
        _import_ray()  # before any file is written: a missing extra is a usage error
        self.spec, self.settings, self.cam_class = spec, settings, cam_class

    def __call__(self, stages: BatchStages, jobs: list[Job]) -> Iterator[Job]:
        waiting = [job for job in jobs if not stages.settled(job)]
        answers = self._answers(waiting)
        arrived: dict[int, dict] = {}
        position = {id(job): index for index, job in enumerate(waiting)}
        try:
            for job in jobs:
                if job.outcome is None:
                    index = position[id(job)]
                    while index not in arrived:
                        answer = next(answers)
                        arrived[int(answer["index"])] = answer
                    _settle(job, arrived.pop(index))
                yield job
        finally:
            answers.close()

    def _answers(self, waiting: list[Job]) -> Iterator[dict]:
        if not waiting:
            return
        ray = _import_ray()
        connected_here = not ray.is_initialized()
        if connected_here:
            _start(ray, self.settings.address)
        try:
            from ray.data import ActorPoolStrategy, DataContext

            context = DataContext.get_current()
            context.execution_options.preserve_order = True
            context.enable_progress_bars = False  # the run's own bar counts the images written
            _quiet(logging.getLogger("ray.data"))
            size = self.settings.pool_size(ray.cluster_resources())
            console.print(f"Ray: {size} actor(s), each opening and verifying {self.spec.model.name}")
            rows = [{"index": index, "path": str(job.path)} for index, job in enumerate(waiting)]
            blocks = max(1, min(-(-len(rows) // BATCH_SIZE), 8 * size))
            dataset = ray.data.from_items(rows, override_num_blocks=blocks)
            explained = dataset.map_batches(
                Explainer, fn_constructor_args=(self.spec, self.cam_class), batch_size=BATCH_SIZE,
                compute=ActorPoolStrategy(size=size), num_cpus=self.settings.cpus_per_actor,
                num_gpus=self.settings.gpus_per_actor or None, batch_format="numpy")
            yield from explained.iter_rows()
        finally:
            if connected_here:
                ray.shutdown()  # stops the Ray this run started; leaves a joined cluster running


def _settle(job: Job, answer: dict) -> None:
    """Writes what an actor sent back for `job`: its files (the report staged for the audit log), or its
    failed row."""
    if answer["unexpected"]:
        fail_job(job, unexpected_failure(job.out, job.path, answer["unexpected"], answer["error"], answer["trace"]))
    elif answer["error"]:
        fail_job(job, answer["error"])
    else:
        deliver_rendered(job, Rendered(json.loads(answer["report"]), bytes(answer["heatmap"]),
                                       bytes(answer["panel"])))


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ToolMissing(f"--engine ray needs Ray Data, which is not installed here: {RAY_EXTRA}") from error
    return ray


def _quiet(logger: logging.Logger) -> None:
    """Ray Data's progress lines off the terminal (they stay in its session log files): errors only."""
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)


def _start(ray, address: str | None) -> None:
    """Joins the cluster at `address` (with the token a `ray start --head` on this machine saved, as Ray's own
    clients do), or starts a Ray on this machine for this run only."""
    if address is None:
        console.print("starting a Ray on this machine for this run (a few seconds)")
    elif "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 include_dashboard=False if address is None else None)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise ConfigError(f"--address {address}: cannot join a Ray cluster there ({error}); start one with "
                          "`ray start --head` (docs/ray.md) or leave --address out to run on this machine") from error
