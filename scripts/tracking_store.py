"""Snakemake adapter: create the MLflow store and experiment once, and record where they are."""
from unlearnable.atomic import write_json
from unlearnable.jobrunner import run_job
from unlearnable.tracking import init_store, resolve_uri

smk = snakemake  # noqa: F821


def main():
    uri = resolve_uri(smk.params.uri)
    exp_id = init_store(uri, smk.params.experiment, smk.params.artifacts)
    write_json(smk.output[0], {"uri": uri, "experiment": smk.params.experiment, "experiment_id": exp_id})


run_job(smk.log[0], 1, main)
