"""Snakemake adapter: compute a protection (noise + triggers) for a dataset's training split."""
from unlearnable.clip.models import ModelSpec
from unlearnable.protect.config import method_config
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import protect_job
from unlearnable.workflow.tracking import job_tracking

smk = snakemake  # noqa: F821
m = smk.params.model
surrogate = [ModelSpec(x["arch"], x["pretrained"]) for x in m["ensemble"]] if "ensemble" in m \
    else ModelSpec(m["arch"], m["pretrained"])
run_job(smk.log[0], smk.threads, lambda: protect_job(
    smk.input.manifest, smk.input.store, surrogate, method_config(smk.params.method),
    int(smk.wildcards.seed), smk.params.device, smk.output[0], dict(smk.params.cell),
    job_tracking(smk.input.tracking, smk.config["mlflow"]["experiment"]), smk.params.precision), where=smk.output[0])
