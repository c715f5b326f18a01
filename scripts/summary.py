"""Snakemake adapter: gather every evaluation row into results/summary.parquet."""
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import collect_summary

smk = snakemake  # noqa: F821
run_job(smk.log[0], 1, lambda: collect_summary(list(smk.input), smk.output[0]), where=smk.output[0])
