"""Snakemake adapter: write a generated dataset (a registered source kind the workflow makes, e.g. `shapes`)."""
from unlearnable.data.source_kinds import source_kind
from unlearnable.workflow.jobrunner import run_job

smk = snakemake  # noqa: F821
kind = source_kind(smk.params.source["kind"])
run_job(smk.log[0], 1, lambda: kind.write(smk.output[0], kind.settings_of(smk.params.source), smk.threads),
        where=smk.output[0])
