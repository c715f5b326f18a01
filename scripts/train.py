"""Snakemake adapter: train a CLIP from scratch on the train rows of the manifest and store in params.data."""
from unlearnable.jobrunner import run_job
from unlearnable.jobs import train_job
from unlearnable.models import ModelSpec
from unlearnable.tracking import job_tracking
from unlearnable.train import TrainConfig

smk = snakemake  # noqa: F821
m = smk.params.model
run_job(smk.log[0], smk.threads, lambda: train_job(
    smk.params.data["manifest"], smk.params.data["store"], ModelSpec(m["arch"], m["pretrained"]), TrainConfig(**smk.params.train),
    int(smk.wildcards.seed), smk.params.device, smk.output.model, smk.output.record, dict(smk.params.cell),
    job_tracking(smk.input.tracking, smk.config["mlflow"]["experiment"])), where=smk.output[0])
