"""Snakemake adapter: write a generated dataset (`shapes`, or the Flickr8k `standin`)."""
from unlearnable.data.shapes import ShapesConfig, write_shapes
from unlearnable.data.standin import StandinConfig, write_standin
from unlearnable.workflow.jobrunner import run_job

smk = snakemake  # noqa: F821
src = {k: v for k, v in smk.params.source.items() if k != "kind"}
if smk.params.source["kind"] == "standin":
    job = lambda: write_standin(smk.output[0], StandinConfig(**src), workers=smk.threads)  # noqa: E731
else:
    job = lambda: write_shapes(smk.output[0], ShapesConfig(**src))  # noqa: E731
run_job(smk.log[0], 1, job, where=smk.output[0])
