"""MLflow tracking: one store created once, then one run per job.

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
from typing import Any, Iterator

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)


def resolve_uri(config_uri: str) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())  # jobs may run from other folders
    return uri


def init_store(uri: str, experiment: str, artifact_root: str | Path) -> str:
    """Create the store and the experiment (idempotent); return the experiment id."""
    import mlflow

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_root = Path(artifact_root).resolve()
    artifact_root.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(experiment, artifact_location=artifact_root.as_uri())


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


@contextlib.contextmanager
def tracked_run(uri: str, experiment: str, name: str, params: dict, tags: dict[str, str]) -> Iterator[Any]:
    """An MLflow run, retried briefly on SQLite lock contention when many jobs start together."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    for attempt in range(8):
        try:
            mlflow.set_experiment(experiment)
            run = mlflow.start_run(run_name=name, tags=tags)
            break
        except Exception as e:  # sqlite "database is locked" surfaces as several exception types
            if attempt == 7 or "locked" not in str(e).lower():
                raise
            time.sleep(0.5 * (attempt + 1))
    try:
        mlflow.log_params({k: v for k, v in flatten(params).items()})
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run()
