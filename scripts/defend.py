"""Snakemake adapter: apply a defence to a folder's train rows (told by params which manifest and store)."""
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import defend_job

smk = snakemake  # noqa: F821
run_job(smk.log[0], smk.threads, lambda: defend_job(
    smk.params.data["manifest"], smk.params.data["store"], smk.wildcards.defence, dict(smk.params.defence),
    smk.output[0], smk.threads), where=smk.output[0])
