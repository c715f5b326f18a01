"""Snakemake adapter: train a CLIP on the train rows of the manifest and store in params.data, then evaluate it
on the clean test split. One job for both: a separate evaluation job would spend more on starting Python,
torch and MLflow than on evaluating."""
from unlearnable.clip.models import ModelSpec
from unlearnable.clip.train import TrainConfig
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import evaluate_job, train_job
from unlearnable.workflow.tracking import job_tracking

smk = snakemake  # noqa: F821
m = smk.params.model
tracking = job_tracking(smk.input.tracking, smk.config["mlflow"]["experiment"])


def train_and_evaluate():
    cfg = TrainConfig(**smk.params.train, precision=smk.params.precision)
    train_job(smk.params.data["manifest"], smk.params.data["store"], ModelSpec(m["arch"], m["pretrained"]), cfg,
              int(smk.wildcards.seed), smk.params.device, smk.output.model, smk.output.record, dict(smk.params.cell),
              tracking)
    evaluate_job(smk.output.model, smk.output.record, smk.input.test_manifest, smk.input.test_store,
                 smk.params.device, smk.output.metrics, smk.output.metrics_row, tracking, smk.params.eval["batch_size"],
                 smk.params.eval["workers"], smk.params.precision)


run_job(smk.log[0], smk.threads, train_and_evaluate, where=smk.output[0])
