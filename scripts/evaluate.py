"""Snakemake adapter: clean-test retrieval of one trained model."""
import json

from unlearnable.jobrunner import run_job
from unlearnable.jobs import evaluate_job

smk = snakemake  # noqa: F821
run_job(smk.log[0], smk.threads, lambda: evaluate_job(
    smk.input.model, smk.input.record, smk.input.manifest, smk.input.store, smk.params.device, smk.output.json,
    smk.output.parquet, json.loads(open(smk.input.tracking).read()), smk.params.batch_size))
