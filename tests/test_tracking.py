"""The MLflow store under concurrent jobs, and the grid view (parent run per cell, nested steps)."""
import multiprocessing as mp
import os

from unlearnable.workflow.tracking import cell_parent, init_store, log_to_run, resolve_uri, tracked_run

N_JOBS = 8


def _job(uri: str, experiment: str, k: int, barrier) -> None:
    import mlflow

    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    barrier.wait()  # every job hits the store in the same instant
    tags = {"dataset": "d", "method": "m", "victim": "v", "seed": str(k)}
    parent = cell_parent(uri, experiment, f"cell-{k}", tags)
    with tracked_run(uri, experiment, f"train/{k}", {"seed": k, "train": {"epochs": 20}}, {**tags, "stage": "train"},
                     parent_run_id=parent):
        for step in range(20):
            mlflow.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    log_to_run(uri, parent, {"t2i_r1": float(k)}, {"train_run_id": "x"})


def test_eight_jobs_log_at_once_without_failing(tmp_path):
    import mlflow

    uri = resolve_uri(f"sqlite:///{tmp_path}/mlflow.db")
    init_store(uri, "grid", tmp_path / "artifacts")  # created once, as the tracking_store rule does
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_JOBS)
    procs = [ctx.Process(target=_job, args=(uri, "grid", k, barrier)) for k in range(N_JOBS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * N_JOBS
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["grid"])
    parents = runs[runs["tags.stage"] == "cell"]
    assert len(parents) == N_JOBS and sorted(parents["metrics.t2i_r1"]) == list(map(float, range(N_JOBS)))
    train = runs[runs["tags.stage"] == "train"]
    assert len(train) == N_JOBS and set(train["tags.mlflow.parentRunId"]) == set(parents["run_id"])
    client = mlflow.tracking.MlflowClient(uri)
    assert all(len(client.get_metric_history(r, "loss")) == 20 for r in train["run_id"])


def test_cell_parent_is_found_again_on_rerun(tmp_path):
    uri = resolve_uri(f"sqlite:///{tmp_path}/mlflow.db")
    init_store(uri, "grid", tmp_path / "artifacts")
    a = cell_parent(uri, "grid", "shapes/mem/both/tiny-vit/tiny-vit/seed0", {"seed": "0"})
    b = cell_parent(uri, "grid", "shapes/mem/both/tiny-vit/tiny-vit/seed0", {"seed": "0"})
    c = cell_parent(uri, "grid", "shapes/mem/both/tiny-vit/tiny-vit/seed1", {"seed": "1"})
    assert a == b != c
