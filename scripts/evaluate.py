"""Snakemake adapter: clean-test retrieval of one trained model."""
from unlearnable.jobrunner import run_job
from unlearnable.jobs import evaluate_job
from unlearnable.tracking import job_tracking

smk = snakemake  # noqa: F821
run_job(smk.log[0], smk.threads, lambda: evaluate_job(
    smk.input.model, smk.input.record, smk.input.manifest, smk.input.store, smk.params.device, smk.output.json,
    smk.output.parquet, job_tracking(smk.input.tracking, smk.config["mlflow"]["experiment"]), smk.params.batch_size,
    smk.params.workers),
    where=smk.output[0])
