"""MLflow tracking: one store created once; one parent run per grid cell with a nested run per step.

A grid cell is (dataset, method, apply, surrogate, victim, defence, seed). Its training job creates the cell's parent
run (or finds it again on a re-run) and nests its own run under it; evaluation nests under the same parent
and copies the final metrics onto it, so the MLflow UI can filter and compare cells by their axis tags.
Steps shared by several cells (a protection used by every victim) are logged once, tagged with their axes,
and linked from each cell's parent by run id.

The default store is a SQLite file under results/, created by a single job before any parallel job runs
(concurrent creation of a fresh SQLite store races in MLflow's migrations). `MLFLOW_TRACKING_URI` wins over
the config, so a cluster can point every job at a tracking server.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_uri(config_uri: str) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())  # jobs may run from other folders
    return uri


def init_store(uri: str, experiment: str, artifact_root: str | Path) -> str:
    """Create the store (once, before parallel jobs) and the experiment; return the experiment id."""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return ensure_experiment(uri, experiment, artifact_root)


def ensure_experiment(uri: str, experiment: str, artifact_root: str | Path) -> str:
    """Get or create an experiment; two jobs creating the same one at once both get its id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = retry_locked(lambda: mlflow.get_experiment_by_name(experiment))
    if exp is not None:
        return exp.experiment_id
    location = Path(artifact_root).resolve() / experiment
    location.mkdir(parents=True, exist_ok=True)
    try:
        return retry_locked(lambda: mlflow.create_experiment(experiment, artifact_location=location.as_uri()))
    except Exception:  # created meanwhile by another job (the error type depends on the store)
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def job_tracking(tracking_json: str | Path, experiment: str) -> dict:
    """Where a job logs: the store recorded by the tracking_store rule, and the grid's experiment."""
    import json

    return {**json.loads(Path(tracking_json).read_text()), "experiment": experiment}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def retry_locked(fn: Callable[[], T], attempts: int = 10) -> T:
    """Run a store operation, retrying while SQLite reports a lock held by another job."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:  # sqlite "database is locked" surfaces as several exception types
            if attempt == attempts - 1 or "locked" not in str(e).lower():
                raise
            time.sleep(0.3 * (attempt + 1))
    raise AssertionError("unreachable")


def cell_parent(uri: str, experiment: str, cell_id: str, tags: dict[str, str],
                artifact_root: str | Path | None = None) -> str:
    """The parent run of a grid cell: found by its `cell_id` tag, else created (one job per cell does this)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment(ensure_experiment(uri, experiment, artifact_root or "mlartifacts"))
    found = retry_locked(lambda: client.search_runs(
        [exp.experiment_id], filter_string=f"tags.cell_id = '{cell_id}' and tags.stage = 'cell'", max_results=1))
    if found:
        return found[0].info.run_id
    run = retry_locked(lambda: client.create_run(exp.experiment_id, run_name=cell_id,
                                                 tags={**tags, "cell_id": cell_id, "stage": "cell"}))
    retry_locked(lambda: client.set_terminated(run.info.run_id))
    return run.info.run_id


def log_to_run(uri: str, run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
    """Copy final metrics and links onto a (finished) parent run."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    now = int(time.time() * 1000)
    retry_locked(lambda: client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                                          tags=[RunTag(k, str(v)) for k, v in tags.items()]))


@contextlib.contextmanager
def tracked_run(uri: str, experiment: str, name: str, params: dict, tags: dict[str, str],
                parent_run_id: str | None = None, artifact_root: str | Path | None = None) -> Iterator[Any]:
    """An MLflow run (nested under `parent_run_id` when given), robust to many jobs starting together."""
    import mlflow

    exp_id = ensure_experiment(uri, experiment, artifact_root or "mlartifacts")
    fail_abandoned_runs(uri, exp_id, name)

    def start():
        return mlflow.start_run(experiment_id=exp_id, run_name=name, tags=tags, parent_run_id=parent_run_id)

    run = retry_locked(start)
    try:
        retry_locked(lambda: mlflow.log_params(flatten(params)))
        yield run
    except BaseException:
        quiet = logging.getLogger("mlflow")
        level, quiet.level = quiet.level, logging.CRITICAL  # MLflow logs its own store errors with tracebacks
        try:
            retry_locked(lambda: mlflow.end_run(status="FAILED"))
        except Exception as e:  # e.g. the store is on the disk that just filled up: the next attempt marks it
            log.warning("could not mark MLflow run %s FAILED (%s); the job's next attempt will",
                        run.info.run_id, str(e).splitlines()[-1][:200])
        finally:
            quiet.setLevel(level)
        raise
    else:
        retry_locked(mlflow.end_run)


def fail_abandoned_runs(uri: str, experiment_id: str, name: str) -> None:
    """Mark FAILED the RUNNING runs an earlier, killed attempt of this job left (runs are named by job).

    One attempt of a job runs at a time (Snakemake's per-output jobs, the results lock), so a RUNNING run
    with this job's name belongs to a dead process.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    quoted = name.replace("'", "\\'")
    stale = retry_locked(lambda: client.search_runs(
        [experiment_id], filter_string=f"attributes.run_name = '{quoted}' and attributes.status = 'RUNNING'"))
    for r in stale:
        log.warning("marking MLflow run %s FAILED: left RUNNING by an earlier attempt of this job", r.info.run_id)
        retry_locked(lambda r=r: client.set_terminated(r.info.run_id, status="FAILED"))
