"""Snakemake adapter: train a CLIP from scratch on the train rows of a manifest."""
import json

from unlearnable.jobrunner import run_job
from unlearnable.jobs import train_job
from unlearnable.models import ModelSpec
from unlearnable.train import TrainConfig

smk = snakemake  # noqa: F821
m = smk.params.model
run_job(smk.log[0], smk.threads, lambda: train_job(
    smk.input.manifest, smk.input.store, ModelSpec(m["arch"], m["pretrained"]), TrainConfig(**smk.params.train),
    int(smk.wildcards.seed), smk.params.device, smk.output.model, smk.output.record, dict(smk.params.cell),
    json.loads(open(smk.input.tracking).read())))
