"""Snakemake adapter: fetch a Kaggle dataset into resources/, extracted and verified."""
from unlearnable.data.kaggle_source import KaggleSource, download
from unlearnable.workflow.jobrunner import run_job

smk = snakemake  # noqa: F821
run_job(smk.log[0], 1, lambda: download(KaggleSource(**smk.params.source), smk.output[0], smk.params.name),
        where=smk.output[0])
