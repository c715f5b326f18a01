"""Snakemake adapter: create the MLflow store and experiment once, and record where they are."""
from pathlib import Path

from unlearnable.atomic import write_json
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.tracking import init_store, resolve_uri

smk = snakemake  # noqa: F821


def main():
    uri = resolve_uri(smk.params.uri)
    artifacts = str(Path(smk.params.artifacts).resolve())
    init_store(uri, smk.config["mlflow"]["experiment"], artifacts)
    write_json(smk.output[0], {"uri": uri, "artifacts": artifacts})


run_job(smk.log[0], 1, main, where=smk.output[0])
