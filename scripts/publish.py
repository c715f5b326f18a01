"""Snakemake adapter: write the protected dataset as a data owner would publish it."""
from unlearnable.clip.models import ModelSpec
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import export_job
from unlearnable.workflow.tracking import job_tracking

smk = snakemake  # noqa: F821
m = smk.params.model
m = m["ensemble"][0] if "ensemble" in m else m  # publishing needs the tokenizer and resolution, which members share
run_job(smk.log[0], smk.threads, lambda: export_job(
    smk.input.manifest, smk.input.store, smk.input.protection, smk.wildcards.apply,
    ModelSpec(m["arch"], m["pretrained"]), smk.output[0], dict(smk.params.cell),
    job_tracking(smk.input.tracking, smk.config["mlflow"]["experiment"]), smk.threads), where=smk.output[0])
