"""Snakemake adapter: train a CLIP from scratch on the train rows of a manifest."""
from unlearnable.jobrunner import run_job
from unlearnable.jobs import train_job
from unlearnable.models import ModelSpec
from unlearnable.tracking import job_tracking
from unlearnable.train import TrainConfig

smk = snakemake  # noqa: F821
m = smk.params.model
# the clean baseline trains on the dataset's manifest; a retrain on the folder a data owner published
manifest = smk.input.get("manifest") or f"{smk.input.published}/manifest.parquet"
store = smk.input.get("store") or f"{smk.input.published}/images.npy"
run_job(smk.log[0], smk.threads, lambda: train_job(
    manifest, store, ModelSpec(m["arch"], m["pretrained"]), TrainConfig(**smk.params.train),
    int(smk.wildcards.seed), smk.params.device, smk.output.model, smk.output.record, dict(smk.params.cell),
    job_tracking(smk.input.tracking, smk.config["mlflow"]["experiment"])), where=smk.output[0])
